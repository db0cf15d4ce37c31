// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const snapTestSize = 8 << 20

// openSnapLUN serves a LUN of snapTestSize bytes holding pattern A.
func openSnapLUN(t *testing.T) (*testLUN, string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	a := pattern(snapTestSize, 'A')
	if err := os.WriteFile(path, a, 0o600); err != nil {
		t.Fatal(err)
	}
	return serveLUN(t, Options{Name: "snap", Path: path}), path, a
}

// waitSnapshot waits until the snapshot name is no longer copying.
func waitSnapshot(t *testing.T, l *LUN, name string) SnapshotInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, s := range l.Snapshots() {
			if s.Name == name && s.State != SnapshotCopying {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s still copying: %+v", name, l.Snapshots())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSnapshotCopyBeforeWrite: random 4k writes through the ring race the
// paced background copy; the snapshot holds the image at the snapshot
// point and the LUN every write.
func TestSnapshotCopyBeforeWrite(t *testing.T) {
	l, path, a := openSnapLUN(t)
	if err := l.Control("snapshot s1 rate=4M"); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(a)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		lba := uint32(r.UintN(snapTestSize/512-8)) &^ 7
		p := pattern(4096, byte(i))
		l.mustGood(t, write10(lba, 8, false), p, 0)
		copy(want[int64(lba)*512:], p)
	}
	s := waitSnapshot(t, l.LUN, "s1")
	if s.State != SnapshotReady || s.Method != MethodCopy && s.Method != MethodReflink {
		t.Fatalf("snapshot = %+v, want ready", s)
	}
	if s.Copied != snapTestSize || s.Size != snapTestSize || s.Path != path+"@s1" {
		t.Errorf("snapshot = %+v, want copied and size %d, path %s@s1", s, snapTestSize, path)
	}
	got, err := os.ReadFile(path + "@s1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a) {
		t.Fatal("the snapshot differs from the image at the snapshot point")
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Fatal("the LUN lost writes made during the copy")
	}
	st, err := os.ReadFile(path + "@s1.state")
	if err != nil || !bytes.HasPrefix(st, []byte("state ready\n")) {
		t.Fatalf("state file = %q, %v; want state ready", st, err)
	}
}

// TestSnapshotErrors: bad requests fail with the right error and leave
// no file behind.
func TestSnapshotErrors(t *testing.T) {
	l, path, _ := openSnapLUN(t)
	dir := filepath.Dir(path)
	list := func() []string {
		ents, _ := os.ReadDir(dir)
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return n
	}
	before := list()
	for _, line := range []string{"snapshot a/b", "snapshot ..", "snapshot a..b", "snapshot .x",
		"snapshot", "snapshot a b", "snapshot a rate=0", "delete-snapshot ../x"} {
		if err := l.Control(line); !errors.Is(err, ErrInvalid) {
			t.Errorf("Control(%q) = %v, want ErrInvalid", line, err)
		}
	}
	if err := l.Control("delete-snapshot nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete-snapshot of a missing snapshot = %v, want ErrNotFound", err)
	}
	l.SetOnline(false)
	if err := l.Control("snapshot off"); !errors.Is(err, ErrInvalid) {
		t.Errorf("snapshot of an offline LUN = %v, want ErrInvalid", err)
	}
	l.SetOnline(true)
	if got := list(); !slices.Equal(got, before) {
		t.Fatalf("refused snapshots left files: %v, was %v", got, before)
	}
	if err := os.WriteFile(path+"@taken", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Control("snapshot taken"); !errors.Is(err, ErrExists) {
		t.Errorf("snapshot over an existing file = %v, want ErrExists", err)
	}
	if err := l.Control("snapshot s"); err != nil {
		t.Fatal(err)
	}
	if err := l.Control("snapshot s"); !errors.Is(err, ErrExists) {
		t.Errorf("second snapshot s = %v, want ErrExists", err)
	}
	waitSnapshot(t, l.LUN, "s")
}

// TestSnapshotDeleteWhileCopying: a delete stops the copy and removes
// both files; the LUN keeps serving.
func TestSnapshotDeleteWhileCopying(t *testing.T) {
	l, path, _ := openSnapLUN(t)
	if err := l.Control("snapshot d rate=1M"); err != nil {
		t.Fatal(err)
	}
	s := l.Snapshots()[0]
	if s.Method == MethodReflink {
		t.Skip("the file system clones: no copy to interrupt")
	}
	if s.State != SnapshotCopying {
		t.Fatalf("snapshot = %+v, want copying", s)
	}
	if err := l.Control("delete-snapshot d"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path + "@d", path + "@d.state"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after delete: %v, want it gone", p, err)
		}
	}
	if n := len(l.Snapshots()); n != 0 {
		t.Errorf("%d snapshots after delete, want 0", n)
	}
	l.mustGood(t, write10(0, 8, false), pattern(4096, 9), 0)
}

// TestSnapshotInterrupted: a snapshot left copying by a killed daemon is
// failed at the next open, cannot be exported, and can be deleted; a
// ready one can be exported.
func TestSnapshotInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, pattern(1<<20, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, state := range map[string]string{"cut": "copying", "ok": "ready"} {
		if err := os.WriteFile(path+"@"+name, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		st := "state " + state + "\nmethod copy\ncreated 2026-01-02T03:04:05Z\nsize 1048576\ncopied 4096\npause_us 7\nreason \n"
		if err := os.WriteFile(path+"@"+name+".state", []byte(st), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Open(Options{Name: "base", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	snaps := l.Snapshots()
	if len(snaps) != 2 || snaps[0].Name != "cut" || snaps[0].State != SnapshotFailed || snaps[0].Reason == "" ||
		snaps[1].State != SnapshotReady || snaps[1].Pause != 7*time.Microsecond {
		t.Fatalf("Snapshots() = %+v, want cut failed with a reason, ok ready", snaps)
	}
	if _, err := Open(Options{Name: "cut", Path: path + "@cut", ReadOnly: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("export of an interrupted snapshot = %v, want ErrInvalid", err)
	}
	ok, err := Open(Options{Name: "ok", Path: path + "@ok", ReadOnly: true})
	if err != nil {
		t.Fatalf("export of a ready snapshot: %v", err)
	}
	ok.Close()
	if err := l.DeleteSnapshot("cut"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "@cut"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("interrupted snapshot file after delete: %v", err)
	}
}

// TestSnapshotCloseDuringCopy: closing the LUN stops a copy, which is
// then failed on disk, not left looking complete.
func TestSnapshotCloseDuringCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, pattern(snapTestSize, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{Name: "c", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Snapshot("c", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Method == MethodReflink {
		t.Skip("the file system clones: no copy to interrupt")
	}
	st, _ := os.ReadFile(path + "@c.state")
	if !bytes.HasPrefix(st, []byte("state failed\n")) {
		t.Fatalf("state file after close during the copy = %q, want failed", st)
	}
}

// TestSnapshotReflink runs where the temporary directory's file system
// clones (XFS with reflink, Btrfs; set TMPDIR): pattern A, snapshot,
// overwrite with B through the ring: the snapshot is ready at once, by
// reflink, holds A, and the LUN B. It logs the pause for a LUN of
// LUNBRIDGE_TEST_REFLINK_SIZE bytes (default 64 MiB), all of it written.
func TestSnapshotReflink(t *testing.T) {
	dir := t.TempDir()
	probe := func() bool {
		a, err := os.Create(filepath.Join(dir, "a"))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		a.WriteString("x")
		b, err := os.Create(filepath.Join(dir, "b"))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		return unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
	}
	if !probe() {
		t.Skipf("%s cannot clone files (FICLONE): set TMPDIR to XFS with reflink or Btrfs", dir)
	}
	size := int64(64 << 20)
	if s := os.Getenv("LUNBRIDGE_TEST_REFLINK_SIZE"); s != "" {
		n, err := ParseSize(s)
		if err != nil {
			t.Fatal(err)
		}
		size = n
	}
	path := filepath.Join(dir, "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	a := pattern(1<<20, 'A')
	for off := int64(0); off < size; off += 1 << 20 {
		a[0] = byte(off >> 20) // every MiB differs
		if _, err := f.WriteAt(a, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := serveLUN(t, Options{Name: "r", Path: path})
	start := time.Now()
	if err := l.Control("snapshot r1"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	s := l.Snapshots()[0]
	t.Logf("%d MiB LUN, all of it dirty in the page cache: pause %v, the whole snapshot command %v", size>>20, s.Pause, took)
	if s.State != SnapshotReady || s.Method != MethodReflink || s.Pause <= 0 {
		t.Fatalf("snapshot = %+v, want ready by reflink with a pause", s)
	}
	// Again, with nothing left to flush: the clone alone.
	if err := l.Control("snapshot r2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB LUN, synced: pause %v", size>>20, l.Snapshots()[1].Pause)
	orig := slices.Clone(want)
	b := pattern(4096, 'B')
	for lba := uint32(0); int64(lba)*512 < size; lba += uint32(size / 512 / 64) {
		l.mustGood(t, write10(lba, 8, false), b, 0)
		copy(want[int64(lba)*512:], b) // want is now what the LUN holds
	}
	got, err := os.ReadFile(path + "@r1")
	if err != nil {
		t.Fatal(err)
	}
	if got2, _ := os.ReadFile(path); !bytes.Equal(got2, want) {
		t.Fatal("the LUN does not hold its writes")
	}
	if !bytes.Equal(got, orig) {
		t.Fatal("the snapshot differs from the LUN at the snapshot point")
	}
}
