// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fifoNotifier returns a uioNotifier over a FIFO opened O_RDWR|O_NONBLOCK,
// which is pollable like a UIO device: Kick's 4 bytes are what the next
// Wait reads.
func fifoNotifier(t *testing.T) *uioNotifier {
	t.Helper()
	p := filepath.Join(t.TempDir(), "uio")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), p)
	t.Cleanup(func() { f.Close() })
	return &uioNotifier{f: f}
}

// fifoFd returns the raw descriptor of n's FIFO without (*os.File).Fd,
// which would make it blocking.
func fifoFd(t *testing.T, n *uioNotifier) int {
	raw, err := n.f.SyscallConn()
	if err != nil {
		t.Error(err)
		return -1
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func TestNotifierKickWakesWait(t *testing.T) {
	n := fifoNotifier(t)
	if err := n.Kick(); err != nil {
		t.Fatal(err)
	}
	if err := n.Wait(t.Context()); err != nil {
		t.Fatalf("Wait after Kick = %v", err)
	}
}

func TestNotifierWaitParksUntilEvent(t *testing.T) {
	n := fifoNotifier(t)
	done := make(chan error, 1)
	go func() { done <- n.Wait(t.Context()) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v with no event", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := n.Kick(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait = %v", err)
	}
}

// checkCancelEndsWait parks a Wait on ctx, cancels ctx and checks the
// Wait ends with context.Canceled, and that a Wait on another context then
// returns after a Kick: the read deadline that interrupts the Wait must
// not leak into the next one.
func checkCancelEndsWait(t *testing.T, n *uioNotifier, ctx context.Context, cancel context.CancelFunc) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- n.Wait(ctx) }()
	// Let the Wait park (not asserted: a cancel before it parks takes
	// the ctx.Err path instead, which must give the same result).
	time.Sleep(5 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait still parked 10s after its context was cancelled")
	}
	if err := n.Kick(); err != nil {
		t.Fatal(err)
	}
	if err := n.Wait(t.Context()); err != nil {
		t.Fatalf("Wait after a cancelled Wait = %v", err)
	}
}

func TestNotifierWaitCancel(t *testing.T) {
	n := fifoNotifier(t)
	ctx, cancel := context.WithCancel(t.Context())
	checkCancelEndsWait(t, n, ctx, cancel)
	if err := n.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a done context = %v, want context.Canceled", err)
	}
}

// TestNotifierWaitNoAlloc: a Ring waits with one context for its whole
// life, and each wake-up must allocate nothing.
func TestNotifierWaitNoAlloc(t *testing.T) {
	n := fifoNotifier(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	allocs := testing.AllocsPerRun(100, func() {
		if err := n.Kick(); err != nil {
			t.Fatal(err)
		}
		if err := n.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Kick+Wait: %v allocations, want 0", allocs)
	}
	// The registration kept from those Waits still ends a parked Wait
	// when ctx ends, and is dropped for the next context.
	checkCancelEndsWait(t, n, ctx, cancel)
}

// TestNotifierCloseEndsWait: closing the descriptor (Device.Close) ends a
// Wait parked in the netpoller with os.ErrClosed.
func TestNotifierCloseEndsWait(t *testing.T) {
	n := fifoNotifier(t)
	done := make(chan error, 1)
	go func() { done <- n.Wait(t.Context()) }()
	time.Sleep(5 * time.Millisecond) // let it park (not asserted)
	n.f.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Wait after close = %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait still parked 10s after the descriptor closed")
	}
}

func TestCheckMailbox(t *testing.T) {
	mem := make([]byte, 128)
	if err := checkMailbox(mem); !errors.Is(err, ErrVersion) {
		t.Errorf("checkMailbox(version 0) = %v, want ErrVersion", err)
	}
	ne.PutUint16(mem[mbVersion:], 2)
	if err := checkMailbox(mem); err != nil {
		t.Errorf("checkMailbox(version 2) = %v", err)
	}
	if err := checkMailbox(mem[:64]); err == nil {
		t.Error("checkMailbox(64 bytes) succeeded")
	}
}

func TestOpenUIOBusyAndMissing(t *testing.T) {
	if _, _, err := openUIO(filepath.Join(t.TempDir(), "uio9"), 4096); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("openUIO(missing) = %v, want ErrNotExist", err)
	}
}

// TestNotifierKickConcurrentAndClosed: executors kick concurrently, each
// kick writes its 4 bytes; after the descriptor is closed a kick fails
// with os.ErrClosed instead of writing to whatever file reused the number.
func TestNotifierKickConcurrentAndClosed(t *testing.T) {
	n := fifoNotifier(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 16 {
				if err := n.Kick(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	buf := make([]byte, 1024)
	got, err := unix.Read(fifoFd(t, n), buf)
	if err != nil || got != 8*16*4 {
		t.Errorf("the FIFO holds %d bytes (%v), want %d", got, err, 8*16*4)
	}
	n.f.Close()
	if err := n.Kick(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Kick after close = %v, want os.ErrClosed", err)
	}
}
