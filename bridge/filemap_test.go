// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// shmDir is a fresh directory on tmpfs (/dev/shm), or the test skips.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "lunbridge-map-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if !inMemoryFS(mustOpenDir(t, dir)) {
		t.Skip("/dev/shm is not tmpfs here")
	}
	return dir
}

func mustOpenDir(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// openMapLUN opens a LUN of size bytes on a new file in dir.
func openMapLUN(t *testing.T, dir string, size int64, o Options) *LUN {
	t.Helper()
	o.Name, o.Path = "map", filepath.Join(dir, "map.img")
	if o.Size == 0 {
		o.Size = size
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mapPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i>>9)
	}
	return b
}

// split cuts p into buffers of the data area's 4 KiB blocks.
func split(p []byte) [][]byte {
	var bufs [][]byte
	for len(p) > 0 {
		n := min(len(p), 4096)
		bufs = append(bufs, p[:n])
		p = p[n:]
	}
	return bufs
}

// TestMemoryFileMapped: a LUN on tmpfs is mapped, and what goes through
// the mapping is the file: a WRITE is in the file for pread, a pwrite
// from outside is what a READ returns, with no fault.
func TestMemoryFileMapped(t *testing.T) {
	l := openMapLUN(t, shmDir(t), 4<<20, Options{})
	if !l.be.memory || l.be.mm.data == nil {
		t.Fatalf("memory %v, mapped %v: want a mapped memory-backed file", l.be.memory, l.be.mm.data != nil)
	}
	in := mapPattern(1<<20, 3)
	if n, err := l.be.WriteAt(split(in), 1<<20); err != nil || n != len(in) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	got := make([]byte, len(in))
	if _, err := l.be.f.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, in) {
		t.Fatalf("pread after a mapped write: %v, equal %v", err, bytes.Equal(got, in))
	}
	out := mapPattern(64<<10, 9)
	if _, err := l.be.f.WriteAt(out, 3<<20); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(out))
	if n, err := l.be.ReadAt(split(got), 3<<20); err != nil || n != len(out) || !bytes.Equal(got, out) {
		t.Fatalf("ReadAt after pwrite = %d, %v, equal %v", n, err, bytes.Equal(got, out))
	}
	if f := l.be.mm.faults.Load(); f != 0 {
		t.Errorf("%d faults", f)
	}
}

// TestMemoryFileGrows: after a resize the first transfer past the old end
// maps the file again, and goes through the new mapping.
func TestMemoryFileGrows(t *testing.T) {
	l := openMapLUN(t, shmDir(t), 1<<20, Options{})
	if err := l.Resize(3 << 20); err != nil {
		t.Fatal(err)
	}
	in := mapPattern(8192, 5)
	if _, err := l.be.WriteAt(split(in), 2<<20); err != nil {
		t.Fatal(err)
	}
	if got := len(l.be.mm.data); got != 3<<20 {
		t.Errorf("mapping is %d bytes after the grow, want %d", got, 3<<20)
	}
	got := make([]byte, len(in))
	if _, err := l.be.f.ReadAt(got, 2<<20); err != nil || !bytes.Equal(got, in) {
		t.Fatalf("pread: %v, equal %v", err, bytes.Equal(got, in))
	}
}

// TestMemoryFileCutShort: someone truncates the file under the mapping.
// A READ of the lost range, which lunbridge wrote and so knows as
// allocated, faults (SIGBUS, which would kill the process without the
// fault handling), goes to preadv and reports the short file
// (io.ErrUnexpectedEOF); the next READ there asks mincore first. A WRITE
// there faults and pwritev writes it, extending the file.
func TestMemoryFileCutShort(t *testing.T) {
	l := openMapLUN(t, shmDir(t), 4<<20, Options{})
	if _, err := l.be.WriteAt(split(mapPattern(4<<20, 2)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(l.be.f.Name(), 1<<20); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	if _, err := l.be.ReadAt(split(buf), 2<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAt past the cut = %v, want io.ErrUnexpectedEOF", err)
	}
	if f := l.be.mm.faults.Load(); f != 1 {
		t.Errorf("faults = %d after the read, want 1", f)
	}
	if _, err := l.be.ReadAt(split(buf), 2<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAt past the cut, again = %v, want io.ErrUnexpectedEOF", err)
	}
	if f := l.be.mm.faults.Load(); f != 1 {
		t.Errorf("faults = %d after the second read, want still 1 (mincore said no)", f)
	}
	// A read that trusted an older answer (the cut came in between)
	// faults, and the caller goes to preadv.
	if _, err := l.be.mm.transfer(split(buf), 2<<20, false, anyPages); !errors.Is(err, errMapFault) {
		t.Errorf("transfer from the cut range = %v, want errMapFault", err)
	}
	in := mapPattern(8192, 11)
	if n, err := l.be.WriteAt(split(in), 3<<20); err != nil || n != len(in) {
		t.Fatalf("WriteAt past the cut = %d, %v", n, err)
	}
	got := make([]byte, len(in))
	if _, err := l.be.f.ReadAt(got, 3<<20); err != nil || !bytes.Equal(got, in) {
		t.Fatalf("pread of the rewritten range: %v, equal %v", err, bytes.Equal(got, in))
	}
	if f := l.be.mm.faults.Load(); f != 3 {
		t.Errorf("faults = %d after the write, want 3", f)
	}
}

// TestMemoryFileReadOnly: a file open read-only (the fallback of a
// read-only LUN on a read-only file) is mapped for reading; a WRITE does
// not go through the mapping (it would fault) but to pwritev, which
// refuses it.
func TestMemoryFileReadOnly(t *testing.T) {
	path := filepath.Join(shmDir(t), "map.img")
	want := mapPattern(1<<20, 1)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	be := &fileBackend{f: f, fd: int(f.Fd()), memory: true}
	be.sizeBytes.Store(int64(len(want)))
	if err := be.mm.mapFile(be.fd, int64(len(want)), !be.readOnlyFile()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.mm.close(); f.Close() })
	if be.mm.writable {
		t.Fatal("a read-only file mapped for writing")
	}
	got := make([]byte, len(want))
	if _, err := be.ReadAt(split(got), 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAt: %v, equal %v", err, bytes.Equal(got, want))
	}
	if _, err := be.WriteAt([][]byte{make([]byte, 4096)}, 0); err == nil {
		t.Error("WriteAt on a read-only file succeeded")
	}
	if f := be.mm.faults.Load(); f != 0 {
		t.Errorf("%d faults", f)
	}
}

// TestMemoryFileClosed: after Close nothing is mapped, and a transfer
// that comes late does not touch the old mapping.
func TestMemoryFileClosed(t *testing.T) {
	l := openMapLUN(t, shmDir(t), 1<<20, Options{})
	be := l.be
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if be.mm.data != nil {
		t.Fatal("still mapped after Close")
	}
	if _, err := be.ReadAt([][]byte{make([]byte, 4096)}, 0); err == nil {
		t.Error("ReadAt after Close succeeded")
	}
}

// TestMemoryFileAllocs: a transfer through the mapping allocates nothing.
func TestMemoryFileAllocs(t *testing.T) {
	l := openMapLUN(t, shmDir(t), 4<<20, Options{})
	bufs := split(make([]byte, 1<<20))
	if _, err := l.be.WriteAt(bufs, 0); err != nil { // no hole to read
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, err := l.be.ReadAt(bufs, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.be.WriteAt(bufs, 1<<20); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("%.1f allocations per read and write", a)
	}
}

// TestMemoryFileHoleStaysSparse: a READ of a hole of a sparse tmpfs LUN
// reads zeros and allocates nothing (it goes to preadv: through the
// mapping, the fault would allocate the page); once written, the range is
// read through the mapping.
func TestMemoryFileHoleStaysSparse(t *testing.T) {
	l := openMapLUN(t, shmDir(t), 8<<20, Options{})
	blocks := func() int64 {
		var st unix.Stat_t
		if err := unix.Fstat(l.be.fd, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks
	}
	before := blocks()
	buf := mapPattern(1<<20, 1)
	if _, err := l.be.ReadAt(split(buf), 2<<20); err != nil || !bytes.Equal(buf, make([]byte, 1<<20)) {
		t.Fatalf("ReadAt of a hole: %v, zeros %v", err, bytes.Equal(buf, make([]byte, 1<<20)))
	}
	if after := blocks(); after != before {
		t.Fatalf("reading 1 MiB of a hole allocated %d blocks of 512 bytes", after-before)
	}
	in := mapPattern(1<<20, 4)
	if _, err := l.be.WriteAt(split(in), 2<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := l.be.mm.transfer(split(buf), 2<<20, false, allocatedPages); err != nil {
		t.Fatalf("a range written through the mapping, read back through it: %v", err)
	}
	if _, err := l.be.ReadAt(split(buf), 2<<20); err != nil || !bytes.Equal(buf, in) {
		t.Fatalf("ReadAt of the written range: %v, equal %v", err, bytes.Equal(buf, in))
	}
	// UNMAP punches the range again: it is forgotten as allocated, and a
	// READ of it stays a read of a hole.
	if !l.be.zero.punch {
		t.Skip("no proven hole punching here")
	}
	if err := l.be.Unmap(2<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	punched := blocks()
	if _, err := l.be.ReadAt(split(buf), 2<<20); err != nil || !bytes.Equal(buf, make([]byte, 1<<20)) {
		t.Fatalf("ReadAt of the punched range: %v, zeros %v", err, bytes.Equal(buf, make([]byte, 1<<20)))
	}
	if after := blocks(); after != punched {
		t.Fatalf("reading the punched range allocated %d blocks of 512 bytes", after-punched)
	}
}

// TestPageBits: the words and masks of page ranges.
func TestPageBits(t *testing.T) {
	type wm struct {
		w    int
		mask uint64
	}
	for _, c := range []struct {
		off, n int64
		want   []wm
	}{
		{0, 4096, []wm{{0, 1}}},
		{512, 512, []wm{{0, 1}}},
		{4095, 2, []wm{{0, 3}}},
		{4096 * 63, 4096 * 2, []wm{{0, 1 << 63}, {1, 1}}},
		{0, 4096 * 64, []wm{{0, ^uint64(0)}}},
		{4096 * 65, 4096 * 130, []wm{{1, ^uint64(1)}, {2, ^uint64(0)}, {3, 7}}},
		{0, 0, nil},
	} {
		var got []wm
		pageBits(c.off, c.n, func(w int, mask uint64) bool { got = append(got, wm{w, mask}); return true })
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("pageBits(%d, %d) = %v, want %v", c.off, c.n, got, c.want)
		}
	}
}
