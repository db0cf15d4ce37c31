// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// uioName is the name the kernel gives the UIO device of a user backstore:
// "tcm-user/<hba>/<name>/<dev_config>" (tcmu_update_uio_info).
func uioName(hba int, name, devConfig string) string {
	return fmt.Sprintf("tcm-user/%d/%s/%s", hba, name, devConfig)
}

// findUIO returns the uioN whose name attribute equals want, polling
// sysfs until ctx ends or the bound passes: the class device is
// registered during enable, but udev-less systems may list it a moment
// later.
func findUIO(ctx context.Context, fsys fsys, sysfsRoot, want string, bound time.Duration) (string, error) {
	class := filepath.Join(sysfsRoot, "class", "uio")
	deadline := time.Now().Add(bound)
	for {
		names, err := fsys.ReadDir(class)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("tcmu: list %s: %w", class, err)
		}
		for _, n := range names {
			got, err := readAttr(fsys, filepath.Join(class, n, "name"))
			if err == nil && got == want {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("tcmu: no UIO device named %q in %s after %v: %w",
				want, class, bound, os.ErrNotExist)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("tcmu: find UIO %q: %w", want, ctx.Err())
		case <-t.C:
		}
	}
}

// openUIO opens dev O_RDWR|O_NONBLOCK|O_CLOEXEC and maps size bytes of it
// MAP_SHARED. The mapping is made on the raw descriptor before os.NewFile
// wraps it: (*os.File).Fd would switch the descriptor to blocking mode and
// disable deadlines. TCMU allows one opener at a time (tcmu_open fakes
// O_EXCL with EBUSY), reported as ErrBusy.
func openUIO(dev string, size int) (*os.File, []byte, error) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, nil, fmt.Errorf("tcmu: open %s: %w (%w)", dev, ErrBusy, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tcmu: open %s: %w", dev, err)
	}
	// tcmu_mmap refuses any length but the whole area (EINVAL).
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("tcmu: mmap %s (%d bytes): %w", dev, size, err)
	}
	return os.NewFile(uintptr(fd), dev), mem, nil
}

// checkMailbox verifies the start of the shared area: tcmu_mailbox.version
// must be TCMU_MAILBOX_VERSION (2), the only layout this package speaks.
func checkMailbox(mem []byte) error {
	if len(mem) < mbSize {
		return fmt.Errorf("tcmu: shared area of %d bytes is smaller than the mailbox", len(mem))
	}
	if v := ne.Uint16(mem[mbVersion:]); v != mailboxVersion {
		return fmt.Errorf("tcmu: mailbox version %d, want %d: %w", v, mailboxVersion, ErrVersion)
	}
	return nil
}

// uioNotifier implements Notifier over a TCMU UIO descriptor.
//
// Reading 4 bytes returns the event count and succeeds once per batch of
// kernel notifications (uio_read; the descriptor is non-blocking, so an
// empty read is EAGAIN and Go's poller parks the goroutine). Writing a
// 4-byte value calls tcmu_irqcontrol, which reaps completed entries.
type uioNotifier struct {
	f *os.File

	// The Done channel of the context the last Wait watched and the
	// context.AfterFunc registered on it, which interrupts a parked read
	// when the context ends. A Ring waits with one context for its whole
	// life, so registering once per context rather than once per Wait
	// makes a wake-up allocate nothing. Only the waiting goroutine
	// touches these.
	watched <-chan struct{}
	stop    func() bool
	fired   chan struct{} // closed when the AfterFunc has run

	// Wait's read buffer, here rather than on the stack because the race
	// detector's instrumentation of read makes stack buffers escape.
	rbuf [4]byte

	// kickOnce makes kickRaw (or kickErr) on the first Kick.
	kickOnce sync.Once
	kickRaw  syscall.RawConn
	kickErr  error
}

// kickValue is what Kick writes: tcmu_irqcontrol ignores it. Never
// written; a package variable so that no kick allocates a buffer.
var kickValue [4]byte

// kickCall is one Kick's RawConn callback and its result, pooled so that a
// kick allocates nothing while kicks run concurrently.
type kickCall struct {
	errno unix.Errno
	fn    func(fd uintptr) // write, as a value: made once per kickCall
}

var kickCalls = sync.Pool{New: func() any {
	c := new(kickCall)
	c.fn = c.write
	return c
}}

// longAgo is a deadline in the past: it wakes a parked Read at once.
var longAgo = time.Unix(1, 0)

// Wait blocks until the kernel signals new commands or ctx ends. Only one
// goroutine may Wait at a time (the ring owner).
func (n *uioNotifier) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.f == nil {
		return fmt.Errorf("tcmu: wait: %w", os.ErrClosed)
	}
	n.watch(ctx)
	c, err := n.f.Read(n.rbuf[:])
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("tcmu: wait on %s: %w", n.f.Name(), err)
	case c != len(n.rbuf):
		return fmt.Errorf("tcmu: wait on %s: read %d bytes, want 4", n.f.Name(), c)
	}
	return nil
}

// watch makes the end of ctx interrupt reads, unless the context watched
// already has the same Done channel (then it ends at the same moment).
func (n *uioNotifier) watch(ctx context.Context) {
	done := ctx.Done()
	if done == n.watched && n.stop != nil {
		return
	}
	n.unwatch()
	if done == nil {
		return // never ends
	}
	fired, f := make(chan struct{}), n.f
	n.watched, n.fired = done, fired
	n.stop = context.AfterFunc(ctx, func() {
		defer close(fired)
		f.SetReadDeadline(longAgo)
	})
}

// unwatch drops the registration of watch. If it already fired, the read
// deadline it set is cleared once the callback is done, so that it cannot
// land after the reset and interrupt a later Wait on another context.
func (n *uioNotifier) unwatch() {
	if n.stop == nil {
		return
	}
	if !n.stop() {
		<-n.fired
		n.f.SetReadDeadline(time.Time{})
	}
	n.watched, n.stop, n.fired = nil, nil, nil
}

// Kick tells the kernel that completions were posted. The 4-byte write
// runs tcmu_irqcontrol, which copies the data of completed READs to the
// initiator: a system call of a millisecond for a 1 MiB READ under
// emulation. It is made as a raw system call, so that the executor keeps
// its P meanwhile: a blocking-style system call would let the runtime's
// sysmon hand the P to another thread after 20 µs, and the executor would
// come back to no P and park (BENCHMARKS.md, "Where the idle third
// went"). It never blocks for long: tcmu_irqcontrol only takes the
// device's lock.
//
// A Ring merges its own kicks (Ring.kick), but Kick is safe to call
// concurrently: the kernel serialises kicks on its own mutexes (uio's
// info_lock, the device's cmdr_lock), whose waiters spin while the holder
// runs. The write goes through the
// descriptor's RawConn.Control, which holds the descriptor open for the
// call without taking the os.File's write lock: that lock parked a second
// kicker for the length of the first kick, and a parked executor waited
// hundreds of microseconds for a P after it (section 13 there).
func (n *uioNotifier) Kick() error {
	if n.f == nil {
		return fmt.Errorf("tcmu: kick: %w", os.ErrClosed)
	}
	n.kickOnce.Do(func() {
		n.kickRaw, n.kickErr = n.f.SyscallConn()
	})
	if n.kickErr != nil {
		return fmt.Errorf("tcmu: kick %s: %w", n.f.Name(), n.kickErr)
	}
	c := kickCalls.Get().(*kickCall)
	err := n.kickRaw.Control(c.fn)
	errno := c.errno
	c.errno = 0
	kickCalls.Put(c)
	if err != nil {
		// RawConn fails without a system call only on a descriptor
		// being closed ("use of closed file").
		return fmt.Errorf("tcmu: kick %s: %w (%v)", n.f.Name(), os.ErrClosed, err)
	}
	if errno != 0 {
		return fmt.Errorf("tcmu: kick %s: %w", n.f.Name(), errno)
	}
	return nil
}
