// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kickOn is Kick's RawConn callback.
func (n *uioNotifier) kickOn(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&n.wbuf[0])), uintptr(len(n.wbuf)))
		if e == unix.EINTR {
			continue
		}
		n.kickErrno = e
		return true
	}
}
