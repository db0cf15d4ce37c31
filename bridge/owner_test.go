// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/lease"
)

func sizedFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenOneWriter: a second LUN on a file another LUN serves is refused
// with one line naming the file and its holder, whatever it is called; the
// first is untouched; gateways share; closing the holder lets the next in.
func TestOpenOneWriter(t *testing.T) {
	path := sizedFile(t, 1<<20)
	first, err := Open(Options{Name: "a", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{
		{Name: "b", Path: path},
		{Name: "a", Path: path, ReadOnly: true},
		{Name: "g", Path: path, Gateway: &fakeGateway{}},
	} {
		_, err := Open(o)
		if !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("Open(%s) while %s serves the file = %v, want lease.ErrHeld", o.Name, first.Name(), err)
		}
		msg := err.Error()
		for _, w := range []string{"LUN " + o.Name + ": ", path, fmt.Sprintf("pid %d", os.Getpid()), "LUN a"} {
			if !strings.Contains(msg, w) {
				t.Errorf("Open(%s) = %q, lacks %q", o.Name, msg, w)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("Open(%s) = %q: more than one line", o.Name, msg)
		}
	}
	// The refusals left the holder serving: its writes still land.
	if _, err := first.be.WriteAt([][]byte{[]byte("still mine")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	g1, err := Open(Options{Name: "g1", Path: path, Gateway: &fakeGateway{}})
	if err != nil {
		t.Fatalf("gateway after the export closed: %v", err)
	}
	defer g1.Close()
	g2, err := Open(Options{Name: "g2", Path: path, Gateway: &fakeGateway{}})
	if err != nil {
		t.Fatalf("second gateway of the file: %v", err)
	}
	defer g2.Close()
	if _, err := Open(Options{Name: "p", Path: path}); !errors.Is(err, lease.ErrHeld) || !strings.Contains(err.Error(), "gateways of a group") {
		t.Fatalf("plain export beside gateways = %v, want a refusal naming the gateways", err)
	}
}

// fdCount counts this process's open descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// TestOpenReleasesOnFailure fails each step of Open in turn and checks
// that nothing it acquired is left: no descriptor (the O_DIRECT one
// included), no ownership lock, no file it created.
func TestOpenReleasesOnFailure(t *testing.T) {
	injected := errors.New("injected")
	steps := []string{"open", "claim", "size", "flags", "disk"}
	for _, create := range []bool{false, true} {
		for _, step := range steps {
			t.Run(fmt.Sprintf("%s/create=%v", step, create), func(t *testing.T) {
				path := sizedFile(t, 1<<20)
				o := Options{Name: "f", Path: path, DirectIO: true}
				if create {
					os.Remove(path)
					o.Size = 1 << 20
				}
				before := fdCount(t)
				testFailStep = func(s string) error {
					if s == step {
						return injected
					}
					return nil
				}
				l, err := Open(o)
				testFailStep = nil
				if !errors.Is(err, injected) {
					if err == nil {
						l.Close()
					}
					t.Fatalf("Open = %v, want the injected failure", err)
				}
				if after := fdCount(t); after != before {
					t.Errorf("descriptors: %d before, %d after the failed Open", before, after)
				}
				_, statErr := os.Stat(path)
				if create && !errors.Is(statErr, os.ErrNotExist) {
					t.Errorf("the file Open created is still there (%v)", statErr)
				}
				if !create {
					l, err := Open(o)
					if err != nil {
						t.Fatalf("Open after the failure = %v: something is still held", err)
					}
					l.Close()
				}
			})
		}
	}
	// Failures of Open's own checks release the same way.
	t.Run("shrink refused", func(t *testing.T) {
		path := sizedFile(t, 1<<20)
		before := fdCount(t)
		if _, err := Open(Options{Name: "s", Path: path, Size: 4096, DirectIO: true}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Open = %v, want ErrInvalid", err)
		}
		if after := fdCount(t); after != before {
			t.Errorf("descriptors: %d before, %d after", before, after)
		}
	})
}

// TestOpenMessages checks the start-time messages Open gives.
func TestOpenMessages(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Name: "m", Path: filepath.Join(dir, "missing.img")}, "does not exist; give a size to create it"},
		{Options{Name: "e", Path: empty}, "is empty; give a size to grow it"},
		{Options{Name: "b", Path: empty, Size: 4096, BlockSize: 1024}, "block size 1024: must be 512 or 4096"},
	} {
		_, err := Open(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "LUN "+tc.o.Name) {
			t.Errorf("Open(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// logRecords opens a LUN with a JSON logger and returns what it logged.
func logRecords(t *testing.T, o Options) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	o.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	var recs []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestZeroingMethodLogged: the zeroing probe's result is logged as a
// method, never as "zeroing" (which read as if the file were wiped).
func TestZeroingMethodLogged(t *testing.T) {
	found := false
	for _, r := range logRecords(t, Options{Name: "z", Path: sizedFile(t, 1<<20)}) {
		switch r["msg"] {
		case "zeroing":
			t.Errorf("log record %v reads as if the file were being zeroed", r)
		case "zeroing method":
			found = r["method"] != nil && r["lun"] == "z"
		}
	}
	if !found {
		t.Error("no \"zeroing method\" record with method and lun")
	}
}

// TestSparseSpaceWarning: a sparse LUN larger than its file system's free
// space starts with a warning carrying the numbers; one that fits, or
// one preallocated, without.
func TestSparseSpaceWarning(t *testing.T) {
	const size = 64 << 20
	var free uint64
	testStatfs = func(fd int, st *unix.Statfs_t) error {
		if err := unix.Fstatfs(fd, st); err != nil {
			return err
		}
		st.Bsize, st.Bavail = 4096, free/4096
		return nil
	}
	defer func() { testStatfs = nil }()
	warned := func(o Options) map[string]any {
		for _, r := range logRecords(t, o) {
			if r["level"] == "WARN" && strings.HasPrefix(r["msg"].(string), "sparse LUN larger than the free space") {
				return r
			}
		}
		return nil
	}
	free = 8 << 20
	r := warned(Options{Name: "thin", Path: sizedFile(t, size)})
	if r == nil {
		t.Fatal("no warning for a 64 MiB sparse LUN with 8 MiB free")
	}
	if r["size"] != float64(size) || r["free"] != float64(8<<20) || r["unallocated"] != float64(size) {
		t.Errorf("warning %v: want size %d, free %d, unallocated %d", r, size, 8<<20, size)
	}
	free = 1 << 30
	if r := warned(Options{Name: "fits", Path: sizedFile(t, size)}); r != nil {
		t.Errorf("warning %v with 1 GiB free", r)
	}
}

// TestOpenTooLargeForFileSystem: a size the file system cannot hold
// (ext4 with 4K blocks: 16 TiB) says so, instead of a bare EFBIG.
func TestOpenTooLargeForFileSystem(t *testing.T) {
	path := sizedFile(t, 1<<20)
	const size = 32 << 40
	if err := os.Truncate(path, size); err == nil {
		os.Truncate(path, 1<<20)
		t.Skip("the temp file system holds 32 TiB files: no EFBIG to see")
	}
	_, err := Open(Options{Name: "big", Path: path, Size: size})
	if err == nil || !strings.Contains(err.Error(), "cannot hold a file that large") || !strings.Contains(err.Error(), "give a smaller size") {
		t.Fatalf("Open(32 TiB) = %v, want the file system's limit explained", err)
	}
}

// TestReclaimAfterLoss: a LUN whose backing file system went away lost
// its lock with its descriptors; bringing it back claims the file again,
// and is refused if another exporter took the file meanwhile.
func TestReclaimAfterLoss(t *testing.T) {
	path := sizedFile(t, 1<<20)
	a, err := Open(Options{Name: "a", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.reclaim(); err != nil {
		t.Fatalf("reclaim of a file nobody else took = %v", err)
	}
	if _, err := Open(Options{Name: "b", Path: path}); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("Open(b) after a's reclaim = %v, want lease.ErrHeld", err)
	}
	// The lock goes, as with a dead FUSE client, and b takes the file.
	a.infoMu.Lock()
	a.hold.Close()
	a.infoMu.Unlock()
	b, err := Open(Options{Name: "b", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.reclaim(); !errors.Is(err, lease.ErrHeld) || !strings.Contains(err.Error(), "LUN b") {
		t.Fatalf("reclaim after b took the file = %v, want a refusal naming LUN b", err)
	}
}
