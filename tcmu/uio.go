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

	// Wait's read buffer and Kick's value (ignored by tcmu_irqcontrol,
	// never written), here rather than on the stack because the race
	// detector's instrumentation of read and write makes stack buffers
	// escape.
	rbuf, wbuf [4]byte

	// thread is the state of waitThread (WaiterBlocking).
	thread threadWait

	// kickMu serialises Kick, which executors call concurrently (the
	// descriptor's write lock would serialise them anyway); the fields
	// below are its state, made on the first Kick.
	kickMu    sync.Mutex
	kickRaw   syscall.RawConn
	kickFn    func(fd uintptr) bool // kickOn as a value: made once
	kickErrno unix.Errno
}

// threadWait is what uioNotifier.waitThread needs: the descriptor as a
// syscall.RawConn, whose Control runs poll(2) and read(2) on the raw fd
// while holding a reference on it (so a concurrent Close cannot hand the
// number to another file mid-poll; Close then waits for the poll to
// return, which is why Device.Close interrupts it first), and an eventfd
// that interrupts the poll when the context ends or the device closes.
// The descriptor stays non-blocking: the read after poll is the same
// 4-byte read as Wait's and may answer EAGAIN, which polls again.
type threadWait struct {
	raw syscall.RawConn
	// poll is the Control callback, made once: a closure per wait
	// would allocate.
	poll func(fd uintptr)
	fds  [2]unix.PollFd
	// Results of poll.
	woke, interrupted bool
	err               error

	// Like uioNotifier.watched: the context whose end writes the
	// eventfd. Only the waiting goroutine touches these.
	watched <-chan struct{}
	stop    func() bool
	fired   chan struct{}

	// mu guards efd and closed: the waiting goroutine creates the
	// eventfd, Device.Close (interrupt) may write it at any time.
	mu     sync.Mutex
	efd    int // -1 or 0 before the first waitThread: see efdOK
	efdOK  bool
	closed bool
}

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

// eventfdOne is the 8-byte counter increment written to the eventfd.
var eventfdOne = [8]byte{1}

// waitThread is Wait for WaiterBlocking: it blocks the calling OS thread
// in poll(2) on the UIO descriptor and the eventfd, then reads the event
// count from the descriptor, all in the kernel: no netpoller and no
// goroutine hand-off. The caller should hold its thread
// (runtime.LockOSThread). Like Wait, it returns ctx's error once ctx ends
// (the eventfd interrupts a poll in progress), and only one goroutine may
// call it at a time.
func (n *uioNotifier) waitThread(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.f == nil {
		return fmt.Errorf("tcmu: wait: %w", os.ErrClosed)
	}
	tw := &n.thread
	if err := n.watchThread(ctx); err != nil {
		return err
	}
	for {
		tw.woke, tw.interrupted, tw.err = false, false, nil
		if err := tw.raw.Control(tw.poll); err != nil {
			return fmt.Errorf("tcmu: wait on %s: %w", n.f.Name(), err)
		}
		switch {
		case tw.interrupted:
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("tcmu: wait on %s: %w", n.f.Name(), os.ErrClosed)
		case tw.err != nil:
			return fmt.Errorf("tcmu: wait on %s: %w", n.f.Name(), tw.err)
		case tw.woke:
			return nil
		}
		// EAGAIN after a readable poll: another reader took the
		// event; poll again.
	}
}

// pollRaw is threadWait.poll: one poll of the raw UIO descriptor fd and
// the eventfd, then, if fd is readable, the 4-byte read.
func (n *uioNotifier) pollRaw(fd uintptr) {
	tw := &n.thread
	tw.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	tw.fds[1].Revents = 0
	for {
		_, err := unix.Poll(tw.fds[:], -1)
		if errors.Is(err, unix.EINTR) {
			continue // a signal to this thread (the runtime preempts with SIGURG)
		}
		if err != nil {
			tw.err = fmt.Errorf("poll: %w", err)
			return
		}
		break
	}
	if tw.fds[1].Revents != 0 {
		tw.interrupted = true
		return
	}
	if re := tw.fds[0].Revents; re&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && re&unix.POLLIN == 0 {
		tw.err = fmt.Errorf("poll: revents %#x", re)
		return
	}
	c, err := unix.Read(int(fd), n.rbuf[:])
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
	case err != nil:
		tw.err = fmt.Errorf("read: %w", err)
	case c != len(n.rbuf):
		tw.err = fmt.Errorf("read %d bytes, want 4", c)
	default:
		tw.woke = true
	}
}

// watchThread prepares waitThread: the RawConn and the eventfd on first
// use, and an AfterFunc that writes the eventfd when ctx ends, unless the
// context watched already has the same Done channel. It fails with
// os.ErrClosed once interrupt was called.
func (n *uioNotifier) watchThread(ctx context.Context) error {
	tw := &n.thread
	if tw.raw == nil {
		raw, err := n.f.SyscallConn()
		if err != nil {
			return fmt.Errorf("tcmu: wait on %s: %w", n.f.Name(), err)
		}
		tw.raw, tw.poll = raw, n.pollRaw
	}
	tw.mu.Lock()
	if !tw.efdOK {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			tw.mu.Unlock()
			return fmt.Errorf("tcmu: wait on %s: eventfd: %w", n.f.Name(), err)
		}
		tw.efd, tw.efdOK = efd, true
		tw.fds[1] = unix.PollFd{Fd: int32(efd), Events: unix.POLLIN}
	}
	efd := tw.efd
	tw.mu.Unlock()
	if done := ctx.Done(); done != tw.watched || tw.stop == nil {
		n.unwatchThread()
		if done != nil { // else it never ends
			fired := make(chan struct{})
			tw.watched, tw.fired = done, fired
			tw.stop = context.AfterFunc(ctx, func() {
				defer close(fired)
				unix.Write(efd, eventfdOne[:])
			})
		}
	}
	// After unwatchThread, which may have read back an interrupt's
	// write: an interrupt from here on leaves the eventfd readable.
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.closed {
		return fmt.Errorf("tcmu: wait on %s: %w", n.f.Name(), os.ErrClosed)
	}
	return nil
}

// unwatchThread drops the registration of watchThread. If it already
// fired, the eventfd is read back to zero once the callback is done, so
// that it cannot interrupt a later wait on another context (a Close's
// write is read back too; closed makes later waits fail).
func (n *uioNotifier) unwatchThread() {
	tw := &n.thread
	if tw.stop == nil {
		return
	}
	if !tw.stop() {
		<-tw.fired
		var b [8]byte
		unix.Read(tw.efd, b[:])
	}
	tw.watched, tw.stop, tw.fired = nil, nil, nil
}

// releaseWait implements threadWaiter: it drops the context registration
// and closes the eventfd. A later waitThread makes a new one.
func (n *uioNotifier) releaseWait() {
	n.unwatchThread()
	tw := &n.thread
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.efdOK {
		unix.Close(tw.efd)
		tw.efd, tw.efdOK = -1, false
	}
}

// interrupt ends a waitThread in progress and makes later ones fail with
// os.ErrClosed: Device.Close calls it before closing the descriptor,
// whose close would otherwise wait for the poll to return.
func (n *uioNotifier) interrupt() {
	tw := &n.thread
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.closed = true
	if tw.efdOK {
		unix.Write(tw.efd, eventfdOne[:])
	}
}

// Kick tells the kernel that completions were posted. The 4-byte write
// runs tcmu_irqcontrol, which copies the data of completed READs to the
// initiator: a system call of a millisecond for a 1 MiB READ under
// emulation. It is made as a raw system call, so that the executor keeps
// its P meanwhile: a blocking-style system call would let the runtime's
// sysmon hand the P to another thread after 20 µs, and the executor would
// come back to no P and park (BENCHMARKS.md, "Where the idle third
// went"). It never blocks: tcmu_irqcontrol only takes the device's lock.
// The write goes through the descriptor's RawConn, which holds it open.
func (n *uioNotifier) Kick() error {
	if n.f == nil {
		return fmt.Errorf("tcmu: kick: %w", os.ErrClosed)
	}
	n.kickMu.Lock()
	defer n.kickMu.Unlock()
	if n.kickRaw == nil {
		raw, err := n.f.SyscallConn()
		if err != nil {
			return fmt.Errorf("tcmu: kick %s: %w", n.f.Name(), err)
		}
		n.kickRaw, n.kickFn = raw, n.kickOn
	}
	if err := n.kickRaw.Write(n.kickFn); err != nil {
		// RawConn fails without a system call only on a descriptor
		// being closed ("use of closed file").
		return fmt.Errorf("tcmu: kick %s: %w (%v)", n.f.Name(), os.ErrClosed, err)
	}
	if n.kickErrno != 0 {
		return fmt.Errorf("tcmu: kick %s: %w", n.f.Name(), n.kickErrno)
	}
	return nil
}
