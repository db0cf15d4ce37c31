// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// write is Kick's RawConn callback: the 4-byte write to the UIO
// descriptor.
func (c *kickCall) write(fd uintptr) {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&kickValue[0])), uintptr(len(kickValue)))
		if e == unix.EINTR {
			continue
		}
		c.errno = e
		return
	}
}
