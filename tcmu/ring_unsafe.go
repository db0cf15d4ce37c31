// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"sync/atomic"
	"unsafe"
)

// cmd_head and cmd_tail are the only shared words two parties race on, so
// they are the only ones accessed atomically. Go atomics are sequentially
// consistent: loading cmd_head makes the entries the kernel wrote before
// its smp_store_release of cmd_head visible, and storing cmd_tail publishes
// the responses written before it (a plain load broke the ring on arm64:
// tcmu-runner #688, fixed by an acquire load in #693).

// aligned reports whether mem can hold the mailbox's atomic words: cmd_head
// and cmd_tail must be 4-byte aligned, which they are when mem is (a real
// mapping is page-aligned).
func aligned(mem []byte) bool {
	return len(mem) >= mbSize && uintptr(unsafe.Pointer(&mem[0]))%4 == 0
}

// loadCmdHead loads tcmu_mailbox.cmd_head (written by the kernel).
// Preconditions: aligned(mem).
func loadCmdHead(mem []byte) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&mem[mbCmdHead])))
}

// loadCmdTail loads tcmu_mailbox.cmd_tail: where a previous owner of the
// ring stopped completing. Preconditions: aligned(mem).
func loadCmdTail(mem []byte) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&mem[mbCmdTail])))
}

// storeCmdTail publishes tcmu_mailbox.cmd_tail after the responses before
// it were written. Preconditions: aligned(mem).
func storeCmdTail(mem []byte, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&mem[mbCmdTail])), v)
}
