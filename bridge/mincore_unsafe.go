// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mincore is mincore(2) over the mapping m: vec gets one byte per page,
// bit 0 set if the page is resident. x/sys/unix has no wrapper.
func mincore(m, vec []byte) error {
	if len(m) == 0 {
		return nil
	}
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}
