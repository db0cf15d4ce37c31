// SPDX-License-Identifier: Apache-2.0

package main

import (
	"log"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vectored moves slot to or from the file at off with one raw preadv or
// pwritev (trap) of 4 KiB iovecs, as lunbridge does for a memory-backed
// file; iov has room for them.
func vectored(fd int, iov []unix.Iovec, slot []byte, off int64, trap uintptr) {
	for i := range iov {
		iov[i] = unix.Iovec{Base: &slot[i*block]}
		iov[i].SetLen(block)
	}
	n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), uintptr(off), 0, 0)
	if e != 0 || int(n) != len(slot) {
		log.Fatalf("vectored I/O at %d: %d, %v", off, n, e)
	}
}
