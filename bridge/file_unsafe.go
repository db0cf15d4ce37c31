// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"io"
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/uring"
)

// stackIovecs is how many buffers vectored handles without allocating. The
// kernel merges contiguous data-area blocks into one iovec, so a command
// rarely has more than a few.
const stackIovecs = 64

// vectored moves bufs to (write) or from the file at off with
// pwritev/preadv, retrying after short transfers and EINTR, until every
// buffer is done. It builds its own iovec array (on the stack for up to
// stackIovecs buffers) because x/sys's Preadv allocates one per call.
//
// flags, when not 0, are RWF_* flags: the calls are then pwritev2/preadv2.
// With RWF_NOWAIT a short transfer is not retried (the rest would wait):
// vectored returns what it moved and EAGAIN.
//
// raw makes them raw system calls (unix.RawSyscall6), for transfers that
// are memory copies and never wait on a device: a page-cache hit with
// RWF_NOWAIT, a file on tmpfs. The goroutine then keeps its P during the
// copy, as a C thread keeps its CPU; a blocking-style system call would
// let the runtime's sysmon hand the P to another thread after 20 µs, and
// the goroutine would come back to no P and park until one is free, the
// thread hand-off BENCHMARKS.md measured ("Where the idle third went").
// Never raw for what may wait: a raw call holds off garbage collection
// and the P for as long as it lasts.
//
// ring, when not nil (and flags 0), carries the transfers instead: what
// may wait then waits in the kernel's io_uring workers, with no system
// call of the runtime's blocking kind (internal/uring).
func vectored(fd int, bufs [][]byte, off int64, write bool, flags int, raw bool, ring *uring.Ring) (int, error) {
	var stack [stackIovecs]unix.Iovec
	iov := stack[:0]
	if len(bufs) > stackIovecs {
		iov = make([]unix.Iovec, 0, len(bufs))
	}
	for _, b := range bufs {
		if len(b) > 0 {
			iov = append(iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		}
	}
	var trap uintptr
	switch {
	case flags != 0 && write:
		trap = unix.SYS_PWRITEV2
	case flags != 0:
		trap = unix.SYS_PREADV2
	case write:
		trap = unix.SYS_PWRITEV
	default:
		trap = unix.SYS_PREADV
	}
	nowait := flags&unix.RWF_NOWAIT != 0
	total := 0
	for len(iov) > 0 {
		cnt := min(len(iov), 1024) // IOV_MAX
		// The kernel takes the offset as two longs, low and high
		// (pos_from_hilo): on 64-bit the high one is 0. Shifting in
		// two steps keeps the shift below the width on 64-bit.
		lo, hi := uintptr(off), uintptr(uint64(off)>>(bits.UintSize-1)>>1)
		// Direct calls only: the uintptr(unsafe.Pointer) arguments are
		// kept alive for the call's duration only in a direct call.
		var r uintptr
		var e unix.Errno
		if ring != nil && flags == 0 {
			var n int
			var err error
			if write {
				n, err = ring.Writev(fd, iov[:cnt], off)
			} else {
				n, err = ring.Readv(fd, iov[:cnt], off)
			}
			r = uintptr(n)
			if err != nil && !errors.As(err, &e) {
				// The ring itself failed (closed, or an
				// io_uring_enter error): the system call does it.
				ring = nil
				continue
			}
		} else if raw {
			r, _, e = unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt), lo, hi, uintptr(flags))
		} else {
			r, _, e = unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt), lo, hi, uintptr(flags))
		}
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			return total, e
		}
		n := int(r)
		if nowait {
			var want uint64
			for _, v := range iov[:cnt] {
				want += v.Len
			}
			if uint64(n) < want {
				return total + n, unix.EAGAIN
			}
		}
		if n == 0 {
			if write {
				return total, io.ErrShortWrite
			}
			return total, io.ErrUnexpectedEOF
		}
		total += n
		off += int64(n)
		for len(iov) > 0 && uint64(n) >= iov[0].Len {
			n -= int(iov[0].Len)
			iov = iov[1:]
		}
		if len(iov) > 0 && n > 0 {
			iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
			iov[0].Len -= uint64(n)
		}
	}
	return total, nil
}

// pageAligned reports whether p starts on a directAlign boundary.
func pageAligned(p []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
}
