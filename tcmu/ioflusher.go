// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SetIOFlusher marks the calling OS thread as an I/O flusher with
// prctl(PR_SET_IO_FLUSHER, 1) (Linux 5.6+): its memory allocations no
// longer recurse into filesystem or block I/O and it is not throttled as a
// dirtier. A daemon backing a block device needs this: when the kernel
// writes dirty pages back to a LUN under memory pressure, the thread
// serving that LUN must not wait for the same writeback (prctl(2),
// PR_SET_IO_FLUSHER, which names userspace block drivers as the use).
//
// The flag belongs to one thread, and goroutines move between threads: call
// runtime.LockOSThread first and keep the goroutine locked (e.g. the one
// calling Ring.Run, or each I/O worker) for as long as it matters. It needs
// CAP_SYS_RESOURCE: EPERM without it, EINVAL on kernels before 5.6. The
// error wraps the errno so the caller can log it and carry on.
func SetIOFlusher() error {
	if err := unix.Prctl(unix.PR_SET_IO_FLUSHER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("tcmu: prctl(PR_SET_IO_FLUSHER): %w", err)
	}
	return nil
}

// ioFlusher reports the calling thread's PR_GET_IO_FLUSHER value.
func ioFlusher() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_IO_FLUSHER, 0, 0, 0, 0)
	if err != nil {
		return false, fmt.Errorf("tcmu: prctl(PR_GET_IO_FLUSHER): %w", err)
	}
	return v == 1, nil
}
