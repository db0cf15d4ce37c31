// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestFUSEView drives lunbridge's FUSE view in the guest the way an
// operator does, with cat and echo, while O_DIRECT I/O flows through the
// tcm_loop disk: the counters must move by exactly the I/O done, offline
// and read-only must fail the initiator's I/O, a grow must reach the
// kernel's disk, export and remove through /luns must add and drop a disk
// and its directory, the view must unmount at shutdown although a file of
// it is held open, and a stale mount left by SIGKILL must be replaced by
// the next daemon.
func TestFUSEView(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": lb},
		Script: guestScript("fuse-view"),
	})
	st := func(name string) map[string]uint64 {
		t.Helper()
		return readStats(t, filepath.Join(res.ShareDir, name))
	}
	s0, s1, s2, s3 := st("stats.0"), st("stats.1"), st("stats.2"), st("stats.3")
	const n = 16 << 20
	for _, c := range []struct {
		what     string
		from, to map[string]uint64
		key      string
		want     uint64
		atLeast  bool
	}{
		{"write", s0, s1, "write_bytes", n, false},
		{"write", s0, s1, "write_ops", 256, false},
		{"write", s0, s1, "write_errors", 0, false},
		{"write", s0, s1, "sync_ops", 1, true},
		{"write", s0, s1, "read_bytes", 0, false},
		{"read", s1, s2, "read_bytes", n, false},
		{"read", s1, s2, "read_ops", 256, false},
		{"read", s1, s2, "write_ops", 0, false},
		{"read", s1, s2, "total_errors", 0, false},
		{"offline", s2, s3, "errors_not_ready", 1, true},
		{"offline", s2, s3, "read_errors", 1, true},
	} {
		got := c.to[c.key] - c.from[c.key]
		if c.atLeast && got < c.want || !c.atLeast && got != c.want {
			rel := "exactly"
			if c.atLeast {
				rel = "at least"
			}
			t.Errorf("%s: %s moved by %d, want %s %d", c.what, c.key, got, rel, c.want)
		}
	}
	if s2["in_flight"] != 0 {
		t.Errorf("in_flight = %d with the disk idle", s2["in_flight"])
	}
	b, err := os.ReadFile(filepath.Join(res.ShareDir, "latency"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "write count=256 ") || !strings.Contains(string(b), "read count=256 ") {
		t.Errorf("latency does not count 256 reads and 256 writes:\n%s", b)
	}
	b, err = os.ReadFile(filepath.Join(res.ShareDir, "ls"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-r--r--r--", "-rw-r--r--", "--w-------", "dr-xr-xr-x"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("ls -l of the view lacks mode %s:\n%s", want, b)
		}
	}
}
