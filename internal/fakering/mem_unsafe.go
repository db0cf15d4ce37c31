// SPDX-License-Identifier: Apache-2.0

package fakering

import (
	"sync/atomic"
	"unsafe"
)

// The kernel publishes cmd_head with smp_store_release and reads cmd_tail
// with READ_ONCE; the fake uses Go's (sequentially consistent) atomics on
// the same words, so the race detector sees the same happens-before edges
// a real ring has.

func word(mem []byte, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

func storeHead(mem []byte, v uint32) { atomic.StoreUint32(word(mem, mbCmdHead), v) }

func loadTail(mem []byte) uint32 { return atomic.LoadUint32(word(mem, mbCmdTail)) }

func storeTail(mem []byte, v uint32) { atomic.StoreUint32(word(mem, mbCmdTail), v) }
