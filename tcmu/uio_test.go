// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
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

// waitModes are the two ways a uioNotifier waits: Wait parks in Go's
// netpoller, waitThread blocks the (locked) thread in poll(2).
var waitModes = []struct {
	name string
	wait func(n *uioNotifier, ctx context.Context) error
}{
	{"netpoll", (*uioNotifier).Wait},
	{"blocking", func(n *uioNotifier, ctx context.Context) error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return n.waitThread(ctx)
	}},
}

func TestNotifierKickWakesWait(t *testing.T) {
	for _, m := range waitModes {
		t.Run(m.name, func(t *testing.T) {
			n := fifoNotifier(t)
			defer n.releaseWait()
			if err := n.Kick(); err != nil {
				t.Fatal(err)
			}
			if err := m.wait(n, t.Context()); err != nil {
				t.Fatalf("Wait after Kick = %v", err)
			}
		})
	}
}

func TestNotifierWaitParksUntilEvent(t *testing.T) {
	for _, m := range waitModes {
		t.Run(m.name, func(t *testing.T) {
			n := fifoNotifier(t)
			defer n.releaseWait()
			done := make(chan error, 1)
			go func() { done <- m.wait(n, t.Context()) }()
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
		})
	}
}

// checkCancelEndsWait parks a wait on ctx, cancels ctx and checks the
// wait ends with context.Canceled, and that a wait on another context then
// returns after a Kick: what interrupts the wait (a read deadline, the
// eventfd) must not leak into the next wait.
func checkCancelEndsWait(t *testing.T, n *uioNotifier, wait func(*uioNotifier, context.Context) error,
	ctx context.Context, cancel context.CancelFunc) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- wait(n, ctx) }()
	// Let the wait park (not asserted: a cancel before it parks takes
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
	if err := wait(n, t.Context()); err != nil {
		t.Fatalf("Wait after a cancelled Wait = %v", err)
	}
}

func TestNotifierWaitCancel(t *testing.T) {
	for _, m := range waitModes {
		t.Run(m.name, func(t *testing.T) {
			n := fifoNotifier(t)
			defer n.releaseWait()
			ctx, cancel := context.WithCancel(t.Context())
			checkCancelEndsWait(t, n, m.wait, ctx, cancel)
			if err := m.wait(n, ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Wait with a done context = %v, want context.Canceled", err)
			}
		})
	}
}

// TestNotifierWaitNoAlloc: a Ring waits with one context for its whole
// life, and each wake-up must allocate nothing.
func TestNotifierWaitNoAlloc(t *testing.T) {
	for _, m := range waitModes {
		t.Run(m.name, func(t *testing.T) {
			n := fifoNotifier(t)
			defer n.releaseWait()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			wait := (*uioNotifier).Wait
			if m.name == "blocking" {
				// Without the test's LockOSThread wrapper, which
				// allocates nothing either but is not what is measured.
				wait = (*uioNotifier).waitThread
			}
			allocs := testing.AllocsPerRun(100, func() {
				if err := n.Kick(); err != nil {
					t.Fatal(err)
				}
				if err := wait(n, ctx); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("Kick+Wait: %v allocations, want 0", allocs)
			}
			// The registration kept from those Waits still ends a
			// parked Wait when ctx ends, and is dropped for the next
			// context.
			checkCancelEndsWait(t, n, m.wait, ctx, cancel)
		})
	}
}

// TestNotifierWaitThreadInterrupt: Device.Close interrupts a wait blocked
// in poll(2) (the descriptor's close would wait for it), and later waits
// fail with os.ErrClosed.
func TestNotifierWaitThreadInterrupt(t *testing.T) {
	n := fifoNotifier(t)
	defer n.releaseWait()
	done := make(chan error, 1)
	go func() { done <- waitModes[1].wait(n, t.Context()) }()
	time.Sleep(5 * time.Millisecond)
	n.interrupt()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("wait after interrupt = %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait still blocked 10s after interrupt")
	}
	if err := n.waitThread(t.Context()); !errors.Is(err, os.ErrClosed) {
		t.Errorf("wait after interrupt = %v, want os.ErrClosed", err)
	}
}

// TestNotifierReleaseWait: after releaseWait (Run's end) the eventfd is
// closed, and a later wait makes a new one.
func TestNotifierReleaseWait(t *testing.T) {
	n := fifoNotifier(t)
	ctx, cancel := context.WithCancel(t.Context())
	checkCancelEndsWait(t, n, waitModes[1].wait, ctx, cancel)
	efd := n.thread.efd
	n.releaseWait()
	if n.thread.efdOK {
		t.Fatal("eventfd still open after releaseWait")
	}
	if _, err := unix.FcntlInt(uintptr(efd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("fcntl(eventfd %d) after releaseWait = %v, want EBADF", efd, err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	checkCancelEndsWait(t, n, waitModes[1].wait, ctx, cancel)
	n.releaseWait()
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
