// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"os"

	"golang.org/x/sys/unix"
)

// bell wakes one parked executor. An executor parks on its own bell; the
// executor that wakes it rings it.
//
// The bell is an eventfd that the parked executor reads through the
// runtime's netpoller, not a channel. The difference is where the woken
// goroutine lands. A channel send puts it on the sender's P, next in line,
// where it waits until the sender blocks or another P's thread, itself
// woken first, steals it: in the emulated guest of the benchmarks that was
// a mean of 571 µs, with the other P idle in 2497 of 2585 wake-ups
// (BENCHMARKS.md, section 14). An eventfd's readiness is seen by the
// thread parked in epoll_wait on an idle CPU, which the kernel wakes
// directly and which takes an idle P and runs the executor at once, as it
// does for the kernel's ring signal (a mean of 42 µs for the bells in the
// same job).
//
// If no eventfd can be made (the descriptor limit), the bell is a channel.
type bell struct {
	f   *os.File // the eventfd, read by wait; nil: ch is the bell
	fd  int      // f's descriptor, written by ring (f.Fd would make it blocking)
	ch  chan struct{}
	buf [8]byte // wait's read buffer
}

// bellValue is the 8-byte counter increment ring writes: a package
// variable, so that no ring allocates.
var bellValue = [8]byte{1}

// newBell makes a bell; it does not fail (see bell).
func newBell() *bell {
	fd, err := unix.Eventfd(0, unix.EFD_SEMAPHORE|unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return &bell{fd: -1, ch: make(chan struct{}, 1)}
	}
	return &bell{f: os.NewFile(uintptr(fd), "tcmu-executor-bell"), fd: fd}
}

// ring wakes the executor parked on b, or makes its next wait return at
// once. Rings are not lost, and each is consumed by one wait (the eventfd
// counts them: EFD_SEMAPHORE).
//
// Preconditions: b is not closed; at most one ring is pending (the
// scheduler rings only an executor it took off its parked list), so that
// the channel's one slot never blocks ring.
func (b *bell) ring() {
	if b.f == nil {
		b.ch <- struct{}{}
		return
	}
	for {
		// A write to an eventfd adds to its counter and never blocks
		// below 2^64-1; EINTR is the only retry.
		_, err := unix.Write(b.fd, bellValue[:])
		if err != unix.EINTR {
			if err != nil {
				panic("tcmu: ring an executor's eventfd: " + err.Error())
			}
			return
		}
	}
}

// wait parks until b is rung (once per ring).
func (b *bell) wait() {
	if b.f == nil {
		<-b.ch
		return
	}
	for {
		n, err := b.f.Read(b.buf[:])
		if err == nil && n == len(b.buf) {
			return
		}
		if err != nil && err != unix.EINTR {
			panic("tcmu: wait on an executor's eventfd: " + err.Error())
		}
	}
}

// close releases the eventfd.
//
// Preconditions: nobody waits on b or rings it any more.
func (b *bell) close() {
	if b.f != nil {
		b.f.Close()
	}
}
