// SPDX-License-Identifier: Apache-2.0

// The ring: the kernel's ABI (include/uapi/linux/io_uring.h, only what
// is used), its mappings, submission and completion.

package uring

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ABI: io_uring_params and its offsets, an entry (sqe) and a
// completion (cqe), as the kernel lays them out.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

const (
	opReadv  = 1
	opWritev = 2

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	featSingleMmap   = 1 << 0
	featSubmitStable = 1 << 2

	registerEventfd = 4
)

// ErrClosed is returned by a transfer on a closed Ring.
var ErrClosed = errors.New("uring: closed")

// Ring is one io_uring instance. Its methods may be called from any
// number of goroutines; at most Entries transfers are in flight, more
// wait for a slot.
type Ring struct {
	fd      int
	rings   []byte // the SQ ring (and the CQ ring with featSingleMmap)
	cqRings []byte // the CQ ring without featSingleMmap
	sqeMem  []byte

	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []sqe
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []cqe

	efd  *os.File // the eventfd the kernel signals completions on
	rc   syscall.RawConn
	done chan struct{} // closed when the reaper has returned

	mu     sync.Mutex // the SQ tail and broken
	broken error      // protected by mu: a failed io_uring_enter

	free  chan uint32   // slots not in flight
	slots []slot        // by user_data
	stop  atomic.Bool   // Close was called
	inUse atomic.Int64  // transfers in flight, for Close's check
	count atomic.Uint64 // transfers submitted
}

// slot is one transfer in flight: its iovecs, kept on the heap (where
// nothing moves) until the completion, and where its result goes.
type slot struct {
	iov []unix.Iovec
	res chan int32
}

// New sets up a ring with room for entries transfers in flight. It fails
// where io_uring is missing or refused (ENOSYS, EPERM: seccomp,
// kernel.io_uring_disabled) or lacks what the package needs; callers then
// make the system calls themselves.
func New(entries uint32) (*Ring, error) {
	var p params
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r := &Ring{fd: int(fd), done: make(chan struct{})}
	if err := r.setup(&p); err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	go r.reap()
	return r, nil
}

func (r *Ring) setup(p *params) error {
	if p.features&featSubmitStable == 0 {
		return errors.New("io_uring: no IORING_FEAT_SUBMIT_STABLE (Linux < 5.5)")
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.rings, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring: map the SQ ring: %w", err)
	}
	cq := r.rings
	if !single {
		if r.cqRings, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring: map the CQ ring: %w", err)
		}
		cq = r.cqRings
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), prot, flags); err != nil {
		return fmt.Errorf("io_uring: map the entries: %w", err)
	}
	r.sqTail = (*uint32)(unsafe.Pointer(&r.rings[p.sqOff.tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&r.rings[p.sqOff.ringMask]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Pointer(&r.rings[p.sqOff.array])), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Pointer(&cq[p.cqOff.head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&cq[p.cqOff.tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&cq[p.cqOff.ringMask]))
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cq[p.cqOff.cqes])), p.cqEntries)

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("io_uring: eventfd: %w", err)
	}
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEventfd,
		uintptr(unsafe.Pointer(&efd)), 1, 0, 0); e != 0 {
		unix.Close(efd)
		return fmt.Errorf("io_uring_register eventfd: %w", e)
	}
	// Non-blocking, so os.NewFile puts it in the netpoller.
	r.efd = os.NewFile(uintptr(efd), "io_uring eventfd")
	if r.rc, err = r.efd.SyscallConn(); err != nil {
		r.efd.Close()
		return fmt.Errorf("io_uring: eventfd: %w", err)
	}
	// Never more in flight than the CQ holds: no completion is dropped.
	n := min(p.sqEntries, p.cqEntries)
	r.free = make(chan uint32, n)
	r.slots = make([]slot, n)
	for i := range r.slots {
		r.slots[i].res = make(chan int32, 1)
		r.free <- uint32(i)
	}
	return nil
}

// Readv reads into iov from fd at off: one preadv's worth, so the count
// may be short. It returns the kernel's result: a count or an errno.
func (r *Ring) Readv(fd int, iov []unix.Iovec, off int64) (int, error) {
	return r.transfer(opReadv, fd, iov, off)
}

// Writev writes iov to fd at off, as one pwritev: the count may be short.
func (r *Ring) Writev(fd int, iov []unix.Iovec, off int64) (int, error) {
	return r.transfer(opWritev, fd, iov, off)
}

func (r *Ring) transfer(op uint8, fd int, iov []unix.Iovec, off int64) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	r.inUse.Add(1)
	defer r.inUse.Add(-1)
	if r.stop.Load() {
		return 0, ErrClosed
	}
	id := <-r.free
	s := &r.slots[id]
	s.iov = append(s.iov[:0], iov...)
	res, err := r.submit(op, fd, s.iov, off, id)
	if err == nil {
		r.count.Add(1)
		res = <-s.res
	}
	clear(s.iov) // drop the references to the buffers
	r.free <- id
	switch {
	case err != nil:
		return 0, err
	case res < 0:
		return 0, unix.Errno(-res)
	}
	return int(res), nil
}

// Transfers returns how many transfers the ring has carried.
func (r *Ring) Transfers() uint64 { return r.count.Load() }

// submit puts one entry on the SQ and tells the kernel. The system call
// is raw: without IORING_ENTER_GETEVENTS io_uring_enter does not wait (a
// transfer that would wait goes to the kernel's workers), and a
// blocking-style call would wake sysmon, which is what the package is
// for avoiding.
func (r *Ring) submit(op uint8, fd int, iov []unix.Iovec, off int64, id uint32) (int32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken != nil {
		return 0, r.broken
	}
	tail := *r.sqTail // only this side writes it, under mu
	i := tail & r.sqMask
	r.sqes[i] = sqe{
		opcode:   op,
		fd:       int32(fd),
		off:      uint64(off),
		addr:     uint64(uintptr(unsafe.Pointer(&iov[0]))),
		len:      uint32(len(iov)),
		userData: uint64(id),
	}
	r.sqArray[i] = i
	atomic.StoreUint32(r.sqTail, tail+1) // the entry is visible before the tail
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			// The entry may or may not have been taken: the ring cannot
			// be trusted for another transfer, nor this one's slot.
			r.broken = fmt.Errorf("io_uring_enter: %w", e)
			return 0, r.broken
		case n != 1:
			r.broken = fmt.Errorf("io_uring_enter submitted %d of 1", n)
			return 0, r.broken
		}
		return 0, nil
	}
}

// reap hands every completion to its transfer, woken by the eventfd
// through the netpoller. The eventfd is read with a raw system call for
// the reason submit's is raw.
func (r *Ring) reap() {
	defer close(r.done)
	var buf [8]byte
	for {
		err := r.rc.Read(func(fd uintptr) bool {
			_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), 8)
			return e != unix.EAGAIN
		})
		r.drain()
		if err != nil {
			return // closed
		}
	}
}

// drain takes every completion the CQ holds.
func (r *Ring) drain() {
	head := *r.cqHead // only this side writes it
	for {
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			c := r.cqes[head&r.cqMask]
			if c.userData < uint64(len(r.slots)) {
				r.slots[c.userData].res <- c.res
			}
		}
		atomic.StoreUint32(r.cqHead, head)
	}
}

// Close releases the ring. No transfer may be in flight: Close is for
// when the file it served is being closed.
func (r *Ring) Close() error {
	if r.stop.Swap(true) {
		return nil
	}
	if r.inUse.Load() != 0 {
		return errors.New("uring: Close with transfers in flight")
	}
	err := r.efd.Close()
	<-r.done
	r.unmap()
	return errors.Join(err, unix.Close(r.fd))
}

func (r *Ring) unmap() {
	for _, m := range [][]byte{r.sqeMem, r.cqRings, r.rings} {
		if m != nil {
			unix.Munmap(m)
		}
	}
}
