// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestExportLoop exports a file with "lunbridge export" through tcm_loop,
// writes and reads 64 MiB of random data through /dev/sdX with O_DIRECT,
// checks the bytes in the backing file and the counters of the FUSE view,
// checks that a LUN RESET arrives as a TMR entry, and checks that shutdown
// leaves configfs as it was.
func TestExportLoop(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": lb},
		Script: guestScript("export-loop"),
	})
	sums := md5s(t, filepath.Join(res.ShareDir, "md5"))
	if len(sums) != 4 {
		t.Fatalf("md5 file has %d sums, want 4: %v", len(sums), sums)
	}
	for i, s := range sums[1:] {
		if s != sums[0] {
			t.Errorf("md5 #%d = %s, want the pattern's %s (back, backing file, backing file after shutdown)", i+1, s, sums[0])
		}
	}
	before := readStats(t, filepath.Join(res.ShareDir, "stats.before"))
	after := readStats(t, filepath.Join(res.ShareDir, "stats.after"))
	const n = 64 << 20
	if got := after["write_bytes"] - before["write_bytes"]; got != n {
		t.Errorf("write_bytes grew by %d, want %d", got, n)
	}
	if got := after["read_bytes"] - before["read_bytes"]; got < n {
		t.Errorf("read_bytes grew by %d, want at least %d", got, n)
	}
	// bs=1M with O_DIRECT: one command per MiB at the 1 MiB default.
	if got := after["write_ops"] - before["write_ops"]; got != n>>20 {
		t.Errorf("write_ops grew by %d, want %d (one command per 1 MiB write)", got, n>>20)
	}
	lim := readStats(t, filepath.Join(res.ShareDir, "limits"))
	if lim["max_sectors_kb"] != 1024 || lim["hw_max_sectors"] != 2048 {
		t.Errorf("limits %v, want max_sectors_kb 1024 and hw_max_sectors 2048", lim)
	}
	if q, mb := lim["hw_queue_depth"], lim["max_data_area_mb"]; q == 0 || mb < q {
		t.Errorf("data area of %d MiB for a queue depth of %d: want room for a 1 MiB command per slot", mb, q)
	}
	if got := after["sync_ops"] - before["sync_ops"]; got < 1 {
		t.Errorf("sync_ops grew by %d, want at least 1 (conv=fsync)", got)
	}
}

// md5s reads the first field of each line of an md5sum output file.
func md5s(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// readStats parses a "key value" stats file; non-numeric values are skipped.
func readStats(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// TestKillRestart kills lunbridge with SIGKILL in the middle of a 64 MiB
// O_DIRECT write and restarts it within cmd_time_out: the new daemon adopts
// the TCMU device, the loopback LUN and the stale FUSE mount, the kernel's
// in-flight commands are retried (reset_ring BUSY), dd finishes without an
// error and every byte is in place. Then a write acknowledged after
// SYNCHRONIZE CACHE survives a second SIGKILL. Then a daemon killed with
// two LUNs comes back with one of them and a new one: the kept LUN keeps
// its number and /dev/sdX and its bytes, the new one is served beside the
// stale LUN, and a clean stop leaves that stale LUN for whoever serves it
// next. A clean stop at the end leaves configfs as it was.
func TestKillRestart(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": lb},
		Script: guestScript("kill-restart"),
	})
	sums := md5s(t, filepath.Join(res.ShareDir, "md5"))
	if len(sums) != 3 || sums[1] != sums[0] || sums[2] != sums[0] {
		t.Errorf("after the restart, md5 of pattern, device and backing file = %v, want all equal", sums)
	}
	sums = md5s(t, filepath.Join(res.ShareDir, "md5.sync"))
	if len(sums) != 2 || sums[1] != sums[0] {
		t.Errorf("synced write after SIGKILL: md5 of pattern and backing file region = %v, want equal", sums)
	}
	sums = md5s(t, filepath.Join(res.ShareDir, "md5.other"))
	if len(sums) != 3 || sums[1] != sums[0] || sums[2] != sums[0] {
		t.Errorf("restart with other LUNs: md5 of pattern, disk1 read back, disk2's file = %v, want all equal", sums)
	}
}

// TestExportOnFUSE serves a backing file that lives on a FUSE mount in the
// guest (go-fuse's loopback, as sshfs or a distributed file system's client
// would be): 32 MiB of O_DIRECT writes and reads through /dev/sdX land in
// the file beneath the mount, and a discard (UNMAP) reads back as zeros.
func TestExportOnFUSE(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	loopfs := vmtest.BuildCommand(t, "./internal/cmd/loopfs")
	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": lb, "loopfs": loopfs},
		Script: guestScript("export-on-fuse"),
	})
	sums := md5s(t, filepath.Join(res.ShareDir, "md5"))
	if len(sums) != 3 || sums[1] != sums[0] || sums[2] != sums[0] {
		t.Errorf("md5 of pattern, device and the file under the FUSE mount = %v, want all equal", sums)
	}
	st := readStats(t, filepath.Join(res.ShareDir, "stats"))
	if st["unmap_ops"]+st["write_same_ops"] == 0 {
		t.Errorf("stats after blkdiscard: unmap_ops %d, write_same_ops %d; want a discard counted", st["unmap_ops"], st["write_same_ops"])
	}
}
