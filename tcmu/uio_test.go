package tcmu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
// returns after a Kick: the deadline used to interrupt the read must not
// leak into the next Wait.
func checkCancelEndsWait(t *testing.T, n *uioNotifier, ctx context.Context, cancel context.CancelFunc) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- n.Wait(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
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
