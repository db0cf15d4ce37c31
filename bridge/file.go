// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/uring"
	"github.com/lunbridge/lunbridge/scsi"
)

// fileBackend is the scsi.Backend of a LUN: the backing file, addressed
// with positional vectored I/O so that workers never share a file offset.
type fileBackend struct {
	f  *os.File
	fd int
	// direct, when not nil, is the file opened again with O_DIRECT: reads
	// and writes whose offset, buffers and lengths are all aligned to
	// directAlign bypass the page cache through it; the others use f.
	direct *os.File
	// directIOs counts the transfers that went through direct.
	directIOs atomic.Uint64
	// zero is what fallocate was proven to do on this file's file system
	// (probeZeroing); falloc is fallocate(2), replaced in tests.
	zero   zeroCaps
	falloc fallocFunc
	// noPunch is set once the file system said it cannot punch holes
	// after all; unmapping then writes zeros, which keeps LBPRZ=1 honest.
	noPunch atomic.Bool
	// noNowait is set once the file system refused RWF_NOWAIT
	// (ReadAtNowait): it is not asked again.
	noNowait atomic.Bool
	// sizeBytes is the LUN's size: a block device's st_size is 0, and a
	// file may be longer than the LUN.
	sizeBytes atomic.Int64
	// gate is what every change of the file passes through, for
	// snapshots (snapshot.go).
	gate snapGate
	// memory: the file lives in memory (tmpfs, ramfs; fsMemory), so its
	// buffered reads and writes are copies that never wait on a device.
	// They are made as raw system calls, which keep the calling
	// goroutine's P (vectored).
	memory bool
	// mm maps a memory-backed file (filemap.go): its READs and WRITEs
	// are copies between mappings. With cached, it maps a page-cache
	// file for reading: ReadAtNowait copies from it what mincore finds
	// resident. Unmapped otherwise.
	mm     fileMap
	cached bool
	// writeTurn, when not nil, makes buffered writes to this file run
	// one at a time: a write holds its one token (a send) for the
	// length of its pwritev. Made on local page-cache file systems
	// (fsPageCache), whose buffered writes hold the inode's lock
	// exclusively: there, concurrent pwritev calls only wait for each
	// other in the kernel, spinning on the lock's owner and then asleep,
	// and each sleeper's thread keeps its Go P until sysmon takes it
	// back, so the waiter for the kernel and the completions wait for a
	// P on an idle CPU (BENCHMARKS.md, "Where the idle third went",
	// section 13). Waiting for the token parks the goroutine and frees
	// its P at once. A channel rather than a sync.Mutex: a mutex whose
	// waiters waited over a millisecond (every 1 MiB write) hands itself
	// over in Unlock by yielding the unlocker's P to the waiter, and the
	// unlocker, which has yet to complete its command, then waited a
	// median 420 us for a P again; a receive that frees a turn readies
	// the next writer and goes on.
	writeTurn chan struct{}
	// ring, when not nil, carries the buffered writes of a page-cache
	// file system (ringFor): they may wait on the journal or on dirty-page
	// throttling, so they cannot be raw system calls, and as blocking-style
	// ones they woke the runtime's sysmon, which then preempted the
	// writing thread every few tens of microseconds for the whole write
	// (BENCHMARKS.md, section 17). Through io_uring they run in the
	// kernel's workers while the goroutine is parked. Nil where io_uring
	// is missing or refused: pwritev as before.
	ring *uring.Ring
}

// ringFor returns the ring for a write of n bytes through fd, or nil for
// a system call. Only the buffered descriptor's writes of at least
// ringMinWrite go through it: direct I/O's are aligned transfers to the
// device, and a short page-cache write costs less than the two wake-ups
// of the kernel worker's round trip, which, with the writes taking turns,
// every write behind it waits for too (4 KiB writes at QD32 on ext4 lost
// half their IOPS through the ring; BENCHMARKS.md, section 17).
func (b *fileBackend) ringFor(fd int, n int64) *uring.Ring {
	if fd != b.fd || n < ringMinWrite {
		return nil
	}
	return b.ring
}

// ringMinWrite is the smallest write fileBackend.ring carries: an eighth
// of the largest transfer. Measured at the two ends only (4 KiB through
// the ring lost, 1 MiB won).
const ringMinWrite = 128 << 10

// ReadAt fills bufs from off with preadv, retrying short transfers. A read
// that ends before the buffers are full (the file shrank under us) is an
// io.ErrUnexpectedEOF.
func (b *fileBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	if n, ok := b.viaMap(bufs, off, false); ok {
		return n, nil
	}
	fd := b.fdFor(bufs, off)
	n, err := vectored(fd, bufs, off, false, 0, b.memory && fd == b.fd, nil)
	if err != nil {
		return n, fmt.Errorf("preadv %s at %d: %w", b.f.Name(), off+int64(n), err)
	}
	return n, nil
}

// WriteAt writes bufs at off with pwritev, retrying short transfers.
func (b *fileBackend) WriteAt(bufs [][]byte, off int64) (int, error) {
	b.gate.enter(off, bufsLen(bufs))
	defer b.gate.leave()
	if n, ok := b.viaMap(bufs, off, true); ok {
		return n, nil
	}
	fd := b.fdFor(bufs, off)
	if b.writeTurn != nil && fd == b.fd {
		b.writeTurn <- struct{}{}
		defer func() { <-b.writeTurn }()
	}
	n, err := vectored(fd, bufs, off, true, 0, b.memory && fd == b.fd, b.ringFor(fd, bufsLen(bufs)))
	if err != nil {
		return n, fmt.Errorf("pwritev %s at %d: %w", b.f.Name(), off+int64(n), err)
	}
	return n, nil
}

// viaMap makes a transfer through the file's mapping (memory-backed
// files, fileMap), mapping the file again first if the LUN grew past it.
// ok is false when it did not: no mapping, a range outside the LUN, or
// a fault; the caller then makes the system call, which reports any
// error.
//
// A READ goes through the mapping only if every page of it is allocated
// (allocatedPages): touching a hole of a tmpfs file through a mapping allocates
// a page, where preadv reads zeros and allocates nothing, and a sparse
// LUN must stay sparse when it is read.
func (b *fileBackend) viaMap(bufs [][]byte, off int64, write bool) (int, bool) {
	if !b.memory {
		return 0, false
	}
	check := allocatedPages
	if write {
		check = anyPages
	}
	n, err := b.mm.transfer(bufs, off, write, check)
	if errors.Is(err, errNotMapped) && off+bufsLen(bufs) <= b.sizeBytes.Load() {
		if b.mm.remap(b.fd, b.sizeBytes.Load()) != nil {
			return 0, false
		}
		n, err = b.mm.transfer(bufs, off, write, check)
	}
	return n, err == nil
}

// ReadAtNowait fills bufs from off from the page cache, or not at all
// (scsi.NowaitReader): a copy from the file's mapping when every page is
// cached (mincore) and the file is mapped (cached), else preadv2 with
// RWF_NOWAIT. A page not cached (mincore, EAGAIN),
// a short count, or any error is scsi.ErrWouldBlock: the command goes to a
// worker, whose ReadAt gives the answer of record. A file system that
// refuses the flag (EOPNOTSUPP: tmpfs on Linux 6.1, most FUSE ones;
// EINVAL, ENOSYS: kernels without it) turns it off for this backend for
// good. With direct I/O every read waits on the device: never.
func (b *fileBackend) ReadAtNowait(bufs [][]byte, off int64) (int, error) {
	if b.direct != nil {
		return 0, scsi.ErrWouldBlock
	}
	if b.cached {
		// A page-cache hit is a copy from the mapping.
		if got, err := b.mm.transfer(bufs, off, false, cachedPages); err == nil {
			return got, nil
		}
		return 0, scsi.ErrWouldBlock
	}
	if b.noNowait.Load() {
		return 0, scsi.ErrWouldBlock
	}
	// A page-cache hit is a copy and a miss returns at once: raw.
	n, err := vectored(b.fd, bufs, off, false, unix.RWF_NOWAIT, true, nil)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		b.noNowait.Store(true)
	}
	return n, scsi.ErrWouldBlock
}

var _ scsi.NowaitReader = (*fileBackend)(nil)

// directAlign is the alignment of direct I/O: a page, which every Linux
// file system's O_DIRECT accepts. The ring's data area hands out whole
// pages, so reads and writes of 4 KiB multiples at 4 KiB offsets qualify.
const directAlign = 4096

// fdFor picks the descriptor for a transfer: the O_DIRECT one when there
// is one and the transfer is aligned, the buffered one otherwise.
func (b *fileBackend) fdFor(bufs [][]byte, off int64) int {
	if b.direct == nil || off%directAlign != 0 {
		return b.fd
	}
	for _, p := range bufs {
		if len(p)%directAlign != 0 || (len(p) > 0 && !pageAligned(p)) {
			return b.fd
		}
	}
	b.directIOs.Add(1)
	return int(b.direct.Fd())
}

// Sync makes the file's data durable. fdatasync has no range form that
// also flushes the device cache, so it always syncs the whole file.
func (b *fileBackend) Sync(off, n int64) error {
	for {
		err := unix.Fdatasync(b.fd)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fdatasync %s: %w", b.f.Name(), err)
		}
		return nil
	}
}

// Unmap deallocates [off, off+n) so that it reads back as zeros: a
// punched hole where the file system was proven to punch (see
// probeZeroing), else a proven FALLOC_FL_ZERO_RANGE, else written zeros,
// which keeps LBPRZ=1 honest on any file system.
func (b *fileBackend) Unmap(off, n int64) error {
	b.gate.enter(off, n)
	defer b.gate.leave()
	switch {
	case b.zero.punch && !b.noPunch.Load():
		err := b.falloc(b.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		switch {
		case err == nil:
			b.mm.forget(off, n)
			return nil
		case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
			b.noPunch.Store(true)
		default:
			return fmt.Errorf("punch hole %s [%d, +%d): %w", b.f.Name(), off, n, err)
		}
	case b.zero.zeroRange:
		return b.zeroRange(off, n)
	}
	return b.writeZeroes(off, n)
}

// zeroChunk is the largest write writeZeroes issues at once.
const zeroChunk = 1 << 20

var zeroes [zeroChunk]byte

// WriteZeroes makes [off, off+n) read as zeros and stay allocated: with
// FALLOC_FL_ZERO_RANGE where the file system was proven to do it (a FUSE
// file system may return 0 and zero nothing), else by writing zeros.
func (b *fileBackend) WriteZeroes(off, n int64) error {
	b.gate.enter(off, n)
	defer b.gate.leave()
	return b.zeroRange(off, n)
}

// zeroRange is WriteZeroes inside the snapshot gate.
func (b *fileBackend) zeroRange(off, n int64) error {
	if b.zero.zeroRange {
		err := b.falloc(b.fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("zero range %s [%d, +%d): %w", b.f.Name(), off, n, err)
		}
	}
	return b.writeZeroes(off, n)
}

// writeZeroes writes zeros over [off, off+n) in zeroChunk pieces.
func (b *fileBackend) writeZeroes(off, n int64) error {
	for n > 0 {
		c := min(n, zeroChunk)
		w, err := b.f.WriteAt(zeroes[:c], off)
		if err != nil {
			return fmt.Errorf("write zeroes %s at %d: %w", b.f.Name(), off+int64(w), err)
		}
		off += c
		n -= c
	}
	return nil
}

// Mapped reports whether the extent starting at off holds data and how
// long it is, with SEEK_DATA/SEEK_HOLE. A file system without them reports
// the whole rest of the file as mapped.
func (b *fileBackend) Mapped(off int64) (bool, int64, error) {
	size := b.sizeBytes.Load()
	if off >= size {
		return false, 0, fmt.Errorf("lba status %s at %d: %w", b.f.Name(), off, io.EOF)
	}
	data, err := unix.Seek(b.fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO): // no data after off: a hole to the end
		return false, size - off, nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return true, size - off, nil
	case err != nil:
		return false, 0, fmt.Errorf("seek data %s at %d: %w", b.f.Name(), off, err)
	}
	if data > off {
		return false, min(data, size) - off, nil
	}
	hole, err := unix.Seek(b.fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, fmt.Errorf("seek hole %s at %d: %w", b.f.Name(), off, err)
	}
	return true, min(hole, size) - off, nil
}

// CopyFrom copies n bytes at srcOff of src, another LUN's file, to dstOff
// with copy_file_range: the kernel copies inside the page cache, and file
// systems with shared extents (XFS, Btrfs) reflink instead of copying.
// Any other source, or a pair of files the kernel cannot copy between
// (different file systems before Linux 5.19, FUSE without copy support),
// is errors.ErrUnsupported, and EXTENDED COPY then copies through a
// buffer.
func (b *fileBackend) CopyFrom(src scsi.Backend, srcOff, dstOff, n int64) error {
	s, ok := src.(*fileBackend)
	if !ok {
		return fmt.Errorf("copy from %T: %w", src, errors.ErrUnsupported)
	}
	b.gate.enter(dstOff, n)
	defer b.gate.leave()
	for n > 0 {
		w, err := unix.CopyFileRange(s.fd, &srcOff, b.fd, &dstOff, int(min(n, 1<<30)), 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) ||
			errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL):
			return fmt.Errorf("copy_file_range %s to %s: %w: %w", s.f.Name(), b.f.Name(), errors.ErrUnsupported, err)
		case err != nil:
			return fmt.Errorf("copy_file_range %s to %s at %d: %w", s.f.Name(), b.f.Name(), dstOff, err)
		case w == 0:
			return fmt.Errorf("copy_file_range %s at %d: %w", s.f.Name(), srcOff, io.ErrUnexpectedEOF)
		}
		n -= int64(w)
	}
	return nil
}

var _ scsi.Copier = (*fileBackend)(nil)
