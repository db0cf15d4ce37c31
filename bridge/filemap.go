// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fileMap is a shared mapping of the backing file. On a memory-backed
// file (tmpfs, ramfs) READ and WRITE are then copies between two
// mappings, the file's and the ring's data area, with no system call (a
// READ only where every page is allocated, allocatedPages: a hole touched
// through a mapping would be allocated). On a local page-cache file
// system (ext4, XFS, Btrfs) the file is mapped for reading only, and a
// READ whose pages mincore finds all in the page cache is such a copy too
// (ReadAtNowait, cachedPages); the others, and every WRITE, take a
// blocking slot and a system call.
//
// Why: a preadv or pwritev is the kernel copying with its own routine
// (on x86, rep movsb where the CPU has ERMS), plus a page-cache lookup
// per 4 KiB page; a copy between mappings is Go's memmove, with vector
// instructions. Measured in the Debian 6.1 guest the real-kernel tests
// use (2 vCPUs under qemu TCG, 256 MiB tmpfs file, 1 MiB copies,
// TestBenchCopy, BENCHMARKS.md "Backing files are mapped"): preadv
// 327–394 MiB/s, the mapping 2048–2344 MiB/s; pwritev 269–385, the
// mapping 1938–1999.
// The kernel's own copy of a READ's data to the initiator, in the kick,
// stays.
//
// Faults: the file can be cut short by someone else (ftruncate) or fill
// its tmpfs; touching such a page is SIGBUS. The copies run with
// debug.SetPanicOnFault, and a fault sends the transfer to the system
// call, which reports what happened (ENOSPC, a short file) as an error,
// as it does without the mapping. A write that faulted half way is
// written again whole by pwritev: writes are idempotent.
//
// The mapping covers the LUN's size when it is made; a LUN that grows is
// mapped again, lazily, by the first transfer past the end (remap). A
// transfer holds mu's shared side for the length of its copy; remap and
// close take it exclusively.
type fileMap struct {
	mu sync.RWMutex
	// data is the mapping, nil when there is none (not mapped yet, a
	// mapping refused, or closed).
	data []byte
	// writable: the file was opened for writing, and mapped so.
	writable bool
	// closed: close ran; nothing is mapped any more.
	closed bool
	// faults counts the transfers that faulted and went to the system
	// call.
	faults atomic.Uint64
	// alloc has a bit per page of the mapping known to be allocated in
	// the file: seen resident by mincore, or written through the
	// mapping. A READ of known pages needs no mincore call. Bits are
	// cleared where lunbridge punches a hole (forget); a hole someone
	// else punches is read through the mapping, which allocates a
	// zeroed page again: memory, never wrong data. Replaced with the
	// mapping, under mu.
	alloc []atomic.Uint64
}

// residentWindow is the most bytes residentLocked checks with one mincore call:
// its vector is on the stack.
const residentWindow = 1 << 20

// pageCheck is what transfer checks of the range's pages before it copies.
type pageCheck uint8

const (
	// anyPages: none (a WRITE, which allocates what it touches).
	anyPages pageCheck = iota
	// allocatedPages: every page allocated in the file (a READ of a
	// memory-backed file): known to be (alloc), else resident by
	// mincore, which is then remembered. Pages stay allocated until a
	// hole is punched or the file is cut.
	allocatedPages
	// cachedPages: every page in the page cache by mincore (a READ of
	// a page-cache file). A page can still be reclaimed right after:
	// then the copy faults it back in from the disk, a blocking read
	// that the ring's watchdog bounds.
	cachedPages
)

// errNotReady: a page of the range is not what pageCheck asked for.
var errNotReady = errors.New("pages not allocated or not cached")

// residentLocked reports whether every page of [off, off+n) of the file is
// in the page cache, with mincore(2) over the mapping.
//
// Preconditions: m.mu is held; the range is inside the mapping.
func (m *fileMap) residentLocked(off, n int64) bool {
	var vec [residentWindow/pageSize + 1]byte
	start := off &^ (pageSize - 1)
	end := off + n
	for start < end {
		w := min(end-start, residentWindow)
		pages := (w + pageSize - 1) / pageSize
		if mincore(m.data[start:start+w], vec[:pages]) != nil {
			return false
		}
		for _, v := range vec[:pages] {
			if v&1 == 0 {
				return false
			}
		}
		start += w
	}
	return true
}

// pageSize is the unit of mincore's answer: the page of every Linux
// architecture lunbridge runs on (amd64, arm64 with 4 KiB pages).
const pageSize = 4096

// errMapFault is a transfer that touched a page of the mapping that is
// not there (SIGBUS): the caller makes it with a system call instead.
var errMapFault = errors.New("fault in the file's mapping")

// errNotMapped: the range is outside the mapping (or there is none).
var errNotMapped = errors.New("range not mapped")

// mapFile maps size bytes of fd; writable maps it for writing too. A
// mapping the kernel refuses leaves m unmapped, and transfers use system
// calls.
func (m *fileMap) mapFile(fd int, size int64, writable bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writable = writable
	return m.remapLocked(fd, size)
}

// remapLocked replaces the mapping with one of size bytes.
//
// Preconditions: m.mu is held exclusively.
func (m *fileMap) remapLocked(fd int, size int64) error {
	if m.closed {
		return errNotMapped
	}
	if m.data != nil {
		if err := unix.Munmap(m.data); err != nil {
			return err
		}
		m.data = nil
	}
	if size <= 0 || int64(int(size)) != size {
		return errNotMapped
	}
	prot := unix.PROT_READ
	if m.writable {
		prot |= unix.PROT_WRITE
	}
	d, err := unix.Mmap(fd, 0, int(size), prot, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	m.data = d
	pages := (size + pageSize - 1) / pageSize
	alloc := make([]atomic.Uint64, (pages+63)/64)
	for i := range min(len(alloc), len(m.alloc)) {
		alloc[i].Store(m.alloc[i].Load())
	}
	m.alloc = alloc
	return nil
}

// pageBits calls fn for each word of alloc that [off, off+n) covers, with
// the mask of the range's pages in it.
func pageBits(off, n int64, fn func(word int, mask uint64) bool) bool {
	if n <= 0 {
		return true
	}
	first, last := off/pageSize, (off+n-1)/pageSize
	for p := first; p <= last; {
		w := p / 64
		lo := p % 64
		hi := min(last-w*64, 63)
		mask := ^uint64(0) >> (63 - hi + lo) << lo
		if !fn(int(w), mask) {
			return false
		}
		p = w*64 + hi + 1
	}
	return true
}

// knownLocked reports whether every page of [off, off+n) is known to be
// allocated.
//
// Preconditions: m.mu is held; the range is inside the mapping.
func (m *fileMap) knownLocked(off, n int64) bool {
	return pageBits(off, n, func(w int, mask uint64) bool { return m.alloc[w].Load()&mask == mask })
}

// markLocked records the pages of [off, off+n) as allocated.
//
// Preconditions: m.mu is held; the range is inside the mapping.
func (m *fileMap) markLocked(off, n int64) {
	pageBits(off, n, func(w int, mask uint64) bool {
		if m.alloc[w].Load()&mask != mask {
			m.alloc[w].Or(mask)
		}
		return true
	})
}

// clearLocked forgets the pages of [off, off+n) as allocated.
//
// Preconditions: m.mu is held; the range is inside the mapping.
func (m *fileMap) clearLocked(off, n int64) {
	pageBits(off, n, func(w int, mask uint64) bool {
		m.alloc[w].And(^mask)
		return true
	})
}

// forget clears the pages wholly inside [off, off+n): lunbridge punched a
// hole there.
func (m *fileMap) forget(off, n int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	first := (off + pageSize - 1) / pageSize * pageSize
	end := min((off+n)/pageSize*pageSize, int64(len(m.data)))
	if m.data == nil || first >= end {
		return
	}
	m.clearLocked(first, end-first)
}

// remap maps size bytes again if the mapping is shorter (the LUN grew).
func (m *fileMap) remap(fd int, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.data == nil || int64(len(m.data)) >= size {
		return nil
	}
	return m.remapLocked(fd, size)
}

// close unmaps the file; later transfers use system calls.
func (m *fileMap) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.data == nil {
		return nil
	}
	err := unix.Munmap(m.data)
	m.data = nil
	return err
}

// transfer copies bufs to (write) or from the file at off through the
// mapping, once the range's pages pass check. It returns the bytes moved,
// errNotMapped if [off, off+len) is not inside the mapping (or a write on
// a read-only one), errNotReady if check failed, or errMapFault if a
// page faulted.
func (m *fileMap) transfer(bufs [][]byte, off int64, write bool, check pageCheck) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := bufsLen(bufs)
	if m.data == nil || off < 0 || off+n > int64(len(m.data)) || (write && !m.writable) {
		return 0, errNotMapped
	}
	switch check {
	case allocatedPages:
		if !m.knownLocked(off, n) {
			if !m.residentLocked(off, n) {
				return 0, errNotReady
			}
			m.markLocked(off, n)
		}
	case cachedPages:
		if !m.residentLocked(off, n) {
			return 0, errNotReady
		}
	}
	if err := copyMapped(m.data[off:off+n], bufs, write); err != nil {
		m.faults.Add(1)
		// Some page of the range is gone (the file was cut): what
		// was known of it is not any more.
		m.clearLocked(off, n)
		return 0, err
	}
	if write {
		m.markLocked(off, n)
	}
	return int(n), nil
}

// copyMapped copies between file (a window of the mapping) and bufs,
// turning a fault (SIGBUS, SIGSEGV) on either side into errMapFault.
func copyMapped(file []byte, bufs [][]byte, write bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = errMapFault
		}
	}()
	for _, b := range bufs {
		if write {
			copy(file, b)
		} else {
			copy(b, file)
		}
		file = file[len(b):]
	}
	return nil
}
