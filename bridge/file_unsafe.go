package bridge

import (
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stackIovecs is how many buffers vectored handles without allocating. The
// kernel merges contiguous data-area blocks into one iovec, so a command
// rarely has more than a few.
const stackIovecs = 64

// vectored moves bufs to (write) or from the file at off with
// pwritev/preadv, retrying after short transfers and EINTR, until every
// buffer is done. It builds its own iovec array (on the stack for up to
// stackIovecs buffers) because x/sys's Preadv allocates one per call.
func vectored(fd int, bufs [][]byte, off int64, write bool) (int, error) {
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
	trap := uintptr(unix.SYS_PREADV)
	if write {
		trap = unix.SYS_PWRITEV
	}
	total := 0
	for len(iov) > 0 {
		cnt := min(len(iov), 1024) // IOV_MAX
		r, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt), uintptr(off), 0, 0)
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			return total, e
		}
		n := int(r)
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
