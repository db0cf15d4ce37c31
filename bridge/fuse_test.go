// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lunbridge/lunbridge/tcmu"
)

// The backing file of a LUN may live on a FUSE mount (sshfs, a distributed
// file system's client). These tests mount real FUSE file systems in the
// test process: go-fuse's loopback over a temporary directory, and faultFS,
// a one-file system that injects EIO, ENOSPC and hangs at chosen offsets.

// mountFUSE mounts root at a new directory until the test ends.
func mountFUSE(t *testing.T, root fs.InodeEmbedder) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE: %v", err)
	}
	mnt := t.TempDir()
	sec := time.Second
	srv, err := fs.Mount(mnt, root, &fs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "lunbridge-test", Name: "lbtest"},
	})
	if err != nil {
		t.Skipf("cannot mount FUSE (needs root or fusermount): %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

func TestLUNOnFUSELoopback(t *testing.T) {
	root, err := fs.NewLoopbackRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mnt := mountFUSE(t, root)
	lunSuite(t, filepath.Join(mnt, "disk.img"))
}

// faultFS is a FUSE file system with one file, disk.img, kept in a real
// file beneath it. Reads and writes that touch a configured offset fail
// with an errno, or hang until released. Every open is direct I/O, so
// every read and write reaches it.
type faultFS struct {
	fs.Inode
	data *os.File

	mu     sync.Mutex
	faults []fault // protected by mu
}

// fault makes reads (write=false) or writes touching byte off fail with
// errno, or, when errno is 0, hang until hang is closed and then fail
// with EIO (or succeed, with serve).
type fault struct {
	write bool
	off   int64
	errno syscall.Errno
	hang  chan struct{}
	serve bool
}

var (
	_ = (fs.NodeOnAdder)((*faultFS)(nil))
	_ = (fs.NodeOpener)((*faultFile)(nil))
	_ = (fs.NodeGetattrer)((*faultFile)(nil))
	_ = (fs.NodeSetattrer)((*faultFile)(nil))
	_ = (fs.FileReader)((*faultHandle)(nil))
	_ = (fs.FileWriter)((*faultHandle)(nil))
	_ = (fs.FileFsyncer)((*faultHandle)(nil))
	_ = (fs.FileFlusher)((*faultHandle)(nil))
)

func newFaultFS(t *testing.T, size int64) *faultFS {
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &faultFS{data: f}
}

func (r *faultFS) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, &faultFile{fs: r}, fs.StableAttr{Mode: syscall.S_IFREG})
	r.AddChild("disk.img", ch, true)
}

func (r *faultFS) inject(f fault) {
	r.mu.Lock()
	r.faults = append(r.faults, f)
	r.mu.Unlock()
}

// hangAt makes reads touching off hang until the returned function is
// called (it may be called more than once).
func (r *faultFS) hangAt(off int64) (release func()) {
	ch := make(chan struct{})
	r.inject(fault{off: off, hang: ch})
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// stallAt makes reads touching off wait until the returned function is
// called, and then succeed: a file system that stops answering for a while.
func (r *faultFS) stallAt(off int64) (release func()) {
	ch := make(chan struct{})
	r.inject(fault{off: off, hang: ch, serve: true})
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// check applies the faults to an I/O of n bytes at off.
func (r *faultFS) check(write bool, off int64, n int) syscall.Errno {
	r.mu.Lock()
	var hit *fault
	for i := range r.faults {
		f := &r.faults[i]
		if f.write == write && f.off >= off && f.off < off+int64(n) {
			hit = f
			break
		}
	}
	r.mu.Unlock()
	switch {
	case hit == nil:
		return 0
	case hit.errno != 0:
		return hit.errno
	}
	<-hit.hang
	if hit.serve {
		return 0
	}
	return syscall.EIO
}

type faultFile struct {
	fs.Inode
	fs *faultFS
}

func (f *faultFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &faultHandle{fs: f.fs}, fuse.FOPEN_DIRECT_IO, 0
}

func (f *faultFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	st, err := f.fs.data.Stat()
	if err != nil {
		return fs.ToErrno(err)
	}
	out.Mode = syscall.S_IFREG | 0o644
	out.Size = uint64(st.Size())
	return 0
}

func (f *faultFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if err := f.fs.data.Truncate(int64(sz)); err != nil {
			return fs.ToErrno(err)
		}
	}
	return f.Getattr(ctx, fh, out)
}

type faultHandle struct{ fs *faultFS }

func (h *faultHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := h.fs.check(false, off, len(dest)); e != 0 {
		return nil, e
	}
	n, err := h.fs.data.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *faultHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if e := h.fs.check(true, off, len(data)); e != 0 {
		return 0, e
	}
	n, err := h.fs.data.WriteAt(data, off)
	if err != nil {
		return uint32(n), fs.ToErrno(err)
	}
	return uint32(n), 0
}

func (h *faultHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }
func (h *faultHandle) Flush(ctx context.Context) syscall.Errno               { return 0 }

// TestFUSEFaults checks that errors of the backing store reach the
// initiator as the right sense data: EIO on read is MEDIUM ERROR / UNRECOVERED
// READ ERROR, EIO on write MEDIUM ERROR / WRITE ERROR, ENOSPC SPACE
// ALLOCATION FAILED WRITE PROTECT; other blocks keep working.
func TestFUSEFaults(t *testing.T) {
	const size = 1 << 20
	ffs := newFaultFS(t, size)
	mnt := mountFUSE(t, ffs)
	ffs.inject(fault{write: false, off: 100 * 512, errno: syscall.EIO})
	ffs.inject(fault{write: true, off: 200 * 512, errno: syscall.EIO})
	ffs.inject(fault{write: true, off: 300 * 512, errno: syscall.ENOSPC})
	l := serveLUN(t, Options{Name: "faulty", Path: filepath.Join(mnt, "disk.img")})

	l.wantSense(t, read10(100, 1), nil, 512, 0x03, 0x11, 0x00)
	l.wantSense(t, write10(200, 1, false), pattern(512, 5), 0, 0x03, 0x0c, 0x00)
	l.wantSense(t, write10(300, 1, false), pattern(512, 6), 0, 0x07, 0x27, 0x07)
	l.mustGood(t, write10(400, 8, false), pattern(4096, 7), 0)
	l.mustGood(t, read10(400, 8), nil, 4096)
	s := l.Stats()
	if s.SenseKeyErrors[0x03] != 2 || s.SenseKeyErrors[0x07] != 1 {
		t.Errorf("errors by sense key: medium %d, data protect %d; want 2 and 1", s.SenseKeyErrors[0x03], s.SenseKeyErrors[0x07])
	}
}

// TestFUSEHang checks a backing store that stops answering: its LUN
// reports itself stalled, an aborted command queued behind the hung one is
// completed without I/O, another LUN keeps serving, and shutdown does not
// wait for a hung read forever.
func TestFUSEHang(t *testing.T) {
	const size = 1 << 20
	ffs := newFaultFS(t, size)
	mnt := mountFUSE(t, ffs)
	release1 := ffs.hangAt(64 * 512)
	release2 := ffs.hangAt(128 * 512)
	// Cleanups run last-in first-out: release the hung FUSE reads before
	// the file system is unmounted.
	t.Cleanup(release1)
	t.Cleanup(release2)

	hung, err := Open(Options{Name: "hung", Path: filepath.Join(mnt, "disk.img"), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	hung.stalledAfter = 100 * time.Millisecond
	hung.workerGrace = 200 * time.Millisecond
	h := serveOpened(t, hung)
	other := serveLUN(t, Options{Name: "other", Path: filepath.Join(t.TempDir(), "o.img"), Size: size})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.k.Submit(ctx, read10(64, 1), nil, 512); err != nil {
		t.Fatal(err)
	}
	queued, err := h.k.Submit(ctx, read10(0, 1), nil, 512)
	if err != nil {
		t.Fatal(err)
	}
	// The other LUN is not disturbed.
	other.mustGood(t, write10(0, 8, false), pattern(4096, 8), 0)

	waitState := func(want State) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for hung.Info().State != want {
			if time.Now().After(deadline) {
				t.Fatalf("state = %v, want %v", hung.Info().State, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitState(StateStalled)

	// ABORT TASK for the command queued behind the hung one, then let the
	// hung read fail: the aborted command completes without I/O.
	if err := h.k.SubmitTMR(ctx, 1, []uint16{queued}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the ring take the TMR entry
	release1()
	if err := h.k.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	statuses := map[uint16]uint8{}
	for _, r := range h.k.Completions() {
		statuses[r.ID] = r.Status
	}
	if got := statuses[queued]; got != statusTaskAborted {
		t.Errorf("aborted command: status %#x, want TASK ABORTED", got)
	}
	waitState(StateOnline)

	// A second hang, then shutdown: Serve returns after its grace period
	// although the worker is stuck in the FUSE read.
	if _, err := h.k.Submit(ctx, read10(128, 1), nil, 512); err != nil {
		t.Fatal(err)
	}
	waitState(StateStalled)
	start := time.Now()
	err = h.stop()
	t.Logf("Serve returned %v after cancel with a hung worker: %v", time.Since(start), err)
	if err != nil && !errors.Is(err, tcmu.ErrDrainTimeout) {
		t.Errorf("Serve after a hang = %v, want nil or ErrDrainTimeout", err)
	}
}
