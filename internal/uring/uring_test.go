// SPDX-License-Identifier: Apache-2.0

package uring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRing skips where this kernel has no io_uring for us (a container's
// seccomp, kernel.io_uring_disabled): the callers fall back to system
// calls there, which their own tests cover.
func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("no io_uring here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func iovs(bufs ...[]byte) []unix.Iovec {
	var v []unix.Iovec
	for _, b := range bufs {
		v = append(v, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
	}
	return v
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestWritevReadv(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t)
	a, b := bytes.Repeat([]byte{'a'}, 4096), bytes.Repeat([]byte{'b'}, 100)
	n, err := r.Writev(int(f.Fd()), iovs(a, b), 8192)
	if err != nil || n != len(a)+len(b) {
		t.Fatalf("Writev = %d, %v; want %d", n, err, len(a)+len(b))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(make([]byte, 8192), a...), b...)
	if !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes, not what was written", len(got))
	}
	// Reading past the end is short, as preadv is.
	x, y := make([]byte, 4096), make([]byte, 4096)
	n, err = r.Readv(int(f.Fd()), iovs(x, y), 8192)
	if err != nil || n != len(a)+len(b) {
		t.Fatalf("Readv = %d, %v; want %d", n, err, len(a)+len(b))
	}
	if !bytes.Equal(x, a) || !bytes.Equal(y[:100], b) {
		t.Fatal("Readv read other bytes than were written")
	}
}

func TestErrno(t *testing.T) {
	r := newRing(t, 4)
	buf := make([]byte, 512)
	if _, err := r.Writev(-1, iovs(buf), 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Writev on fd -1: %v, want EBADF", err)
	}
	// The ring still works after a failed transfer.
	f := tempFile(t)
	if n, err := r.Writev(int(f.Fd()), iovs(buf), 0); err != nil || n != len(buf) {
		t.Fatalf("Writev after EBADF = %d, %v", n, err)
	}
}

// More goroutines than slots, each writing its own block and reading it
// back: every transfer gets its own completion.
func TestConcurrent(t *testing.T) {
	r := newRing(t, 4)
	f := tempFile(t)
	const workers, rounds, size = 16, 20, 4096
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := bytes.Repeat([]byte{byte(w + 1)}, size)
			in := make([]byte, size)
			for i := range rounds {
				off := int64(w*rounds+i) * size
				if n, err := r.Writev(int(f.Fd()), iovs(out), off); err != nil || n != size {
					errs <- errors.Join(err, errors.New("short write"))
					return
				}
				if n, err := r.Readv(int(f.Fd()), iovs(in), off); err != nil || n != size || !bytes.Equal(in, out) {
					errs <- errors.Join(err, errors.New("read back other bytes"))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestClosed: a transfer on a closed ring is refused, and Close may be
// called again (newRing's cleanup calls it a third time).
func TestClosed(t *testing.T) {
	r := newRing(t, 2)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	f := tempFile(t)
	buf := make([]byte, 16)
	if _, err := r.Writev(int(f.Fd()), iovs(buf), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Writev after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// The ABI's sizes, from include/uapi/linux/io_uring.h.
func TestABISizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"io_uring_params", unsafe.Sizeof(params{}), 120},
		{"io_uring_sqe", unsafe.Sizeof(sqe{}), 64},
		{"io_uring_cqe", unsafe.Sizeof(cqe{}), 16},
		{"io_sqring_offsets", unsafe.Sizeof(sqringOffsets{}), 40},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
}
