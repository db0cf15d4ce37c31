// SPDX-License-Identifier: Apache-2.0

// Package fakering is an in-process stand-in for the kernel side of a TCMU
// device (drivers/target/target_core_user.c) over a plain []byte, so that
// ring, bridge and FUSE tests run without root, configfs or UIO.
//
// A Kernel lays out the mapping like tcmu_configure_device (mailbox at 0,
// command ring at cmdr_off 128, data area after it), places entries exactly
// like queue_cmd_ring and queue_tmr_ring (a PAD when an entry does not fit
// before the ring end, cmd ids from 1, iovecs over data blocks allocated
// lowest-first and merged when adjacent, the CDB after the iovecs inside
// the entry), and handles completions like tcmu_handle_completions when its
// Notifier is kicked: it walks from the last cleaned entry to cmd_tail,
// skips PAD and TMR entries, and looks commands up by hdr.cmd_id. Anything
// the real kernel would call "ring is broken" makes Err non-nil and fails
// pending and later calls.
//
// The package deliberately re-declares the ABI constants instead of
// importing package tcmu: it is an independent second reading of
// <linux/target_core_user.h>.
package fakering

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// ABI of <linux/target_core_user.h> (see tcmu/abi.go for the field list).
const (
	mbVersion  = 0
	mbFlags    = 2
	mbCmdrOff  = 4
	mbCmdrSize = 8
	mbCmdHead  = 12
	mbCmdTail  = 64
	mbSize     = 128 // sizeof(struct tcmu_mailbox) == CMDR_OFF

	hdrCmdID  = 4
	hdrKflags = 6
	hdrUflags = 7

	reqIovCnt  = 8
	reqCdbOff  = 24
	reqIov     = 48
	rspStatus  = 8
	rspReadLen = 12
	rspSense   = 16
	senseLen   = 96
	entSize    = 112 // sizeof(struct tcmu_cmd_entry)

	tmrType   = 8
	tmrCmdCnt = 12
	tmrCmdIDs = 32

	opPad = 0
	opCmd = 1
	opTMR = 2

	uflagUnknownOp = 0x1
	uflagReadLen   = 0x2
	uflagKeepBuf   = 0x4
)

// ne is the ring byte order: the header is host-endian.
var ne = binary.NativeEndian

// Mailbox capability flags (TCMU_MAILBOX_FLAG_CAP_*).
const (
	CapOOOC    uint16 = 1 << 0
	CapReadLen uint16 = 1 << 1
	CapTMR     uint16 = 1 << 2
	CapKeepBuf uint16 = 1 << 3
	// AllCaps is what current kernels advertise (flags 0xf).
	AllCaps = CapOOOC | CapReadLen | CapTMR | CapKeepBuf
)

// SAM status values the fake itself produces.
const (
	StatusGood           = 0x00
	StatusCheckCondition = 0x02
)

// ErrBroken is returned once the fake found the ring broken (an unknown
// cmd_id at the tail, a tail beyond the head, ...), like the kernel's
// TCMU_DEV_BIT_BROKEN. Kernel.Err says why.
var ErrBroken = errors.New("fakering: ring is broken")

// ErrTooBig is returned for a command the kernel would reject with
// TCM_INVALID_CDB_FIELD: its entry exceeds half the command ring or its
// data the data area.
var ErrTooBig = errors.New("fakering: command too big for the ring")

// Options shape the mapping.
type Options struct {
	// CmdrSize is the command ring size; 0 means 64 KiB. A multiple of 8.
	CmdrSize int
	// DataSize is the data area size; 0 means 1 MiB. A multiple of BlockSize.
	DataSize int
	// BlockSize is the data block size (the kernel's data_blk_size); 0
	// means 4096.
	BlockSize int
	// Flags are the mailbox flags; 0 means AllCaps unless ExactFlags.
	Flags      uint16
	ExactFlags bool
	// Version is the mailbox version; 0 means 2.
	Version uint16
	// NoLog turns off the completion log (Completions) and, for Submit,
	// the gathering of data-in bytes: for benchmarks.
	NoLog bool
	// Mem, when not nil, is the shared memory to use instead of a Go
	// slice (an mmap, to test what happens when it goes away); its length
	// must be 128 (the mailbox)+CmdrSize+DataSize.
	Mem []byte
}

// Response is a command's completion as the kernel saw it.
type Response struct {
	ID     uint16
	Status uint8
	// Sense is rsp.sense_buffer (96 bytes) when Status is CHECK
	// CONDITION, else nil: the kernel copies it only then.
	Sense []byte
	// UnknownOp reports TCMU_UFLAG_UNKNOWN_OP on the entry: the kernel
	// then fails the command with CHECK CONDITION.
	UnknownOp bool
	// ReadLen is the data-in length the kernel transferred: rsp.read_len
	// when TCMU_UFLAG_READ_LEN was set with a nonzero read_len smaller
	// than the buffer, else the full length. 0 for other commands.
	ReadLen int
	// ReadLenSet reports TCMU_UFLAG_READ_LEN with a nonzero read_len.
	ReadLenSet bool
	// Reset reports a command the kernel completed itself in ResetRing.
	Reset bool
	// Data are the data-in bytes returned (ReadLen of them), nil if the
	// kernel returned none (CHECK CONDITION without READ_LEN, no data-in,
	// or NoLog with Submit).
	Data []byte
}

// Kernel is the fake kernel side of one TCMU device. Its methods are safe
// for concurrent use.
type Kernel struct {
	mem       []byte
	ring      []byte
	cmdrOff   int
	cmdrSize  uint32
	dataOff   int
	blockSize int
	noLog     bool

	// mu is the fake's cmdr_lock.
	mu          sync.Mutex
	head        uint32 // our cmd_head; the shared copy is only written
	lastCleaned uint32
	lastEntry   int
	blocks      []bool      // data block bitmap
	freeBlocks  int         // unset entries in blocks
	blockHint   int         // no free block below it
	cmds        []*inflight // by cmd_id; nil when free
	idHint      int         // no free cmd_id below it (>= 1)
	spare       []*inflight
	nInflight   int
	events      uint64
	notifiers   []*Notifier
	progress    chan struct{} // closed on completions when someone waits
	log         []Response
	completed   uint64
	err         error
	kickErr     error
}

// inflight is the kernel's tcmu_cmd: it keeps its own copy of the data
// iovecs (the kernel never trusts offsets it reads back from the ring).
type inflight struct {
	id     uint16
	blocks []int
	iovs   [][2]int // data-in: mapping offset and length
	inLen  int
	gather bool // someone wants the response: copy sense and data-in
	done   chan doResult
}

type doResult struct {
	resp Response
	err  error
}

// NewKernel lays out a mailbox, command ring and data area.
func NewKernel(o Options) (*Kernel, error) {
	if o.CmdrSize == 0 {
		o.CmdrSize = 64 << 10
	}
	if o.BlockSize == 0 {
		o.BlockSize = 4096
	}
	if o.DataSize == 0 {
		o.DataSize = 1 << 20
	}
	if o.Version == 0 {
		o.Version = 2
	}
	if o.Flags == 0 && !o.ExactFlags {
		o.Flags = AllCaps
	}
	if o.CmdrSize%8 != 0 || o.CmdrSize < 2*(entSize+16) || o.CmdrSize > 1<<30 {
		return nil, fmt.Errorf("fakering: CmdrSize %d: want a multiple of 8 in [%d, 1 GiB]", o.CmdrSize, 2*(entSize+16))
	}
	if o.BlockSize <= 0 || o.DataSize < 0 || o.DataSize%o.BlockSize != 0 {
		return nil, fmt.Errorf("fakering: DataSize %d is not a multiple of BlockSize %d", o.DataSize, o.BlockSize)
	}
	if o.Mem == nil {
		o.Mem = make([]byte, mbSize+o.CmdrSize+o.DataSize)
	} else if len(o.Mem) != mbSize+o.CmdrSize+o.DataSize {
		return nil, fmt.Errorf("fakering: Mem is %d bytes, want %d", len(o.Mem), mbSize+o.CmdrSize+o.DataSize)
	}
	k := &Kernel{
		mem:       o.Mem,
		cmdrOff:   mbSize,
		cmdrSize:  uint32(o.CmdrSize),
		dataOff:   mbSize + o.CmdrSize,
		blockSize: o.BlockSize,
		noLog:     o.NoLog,
		blocks:    make([]bool, o.DataSize/o.BlockSize),
		cmds:      make([]*inflight, 1), // id 0 is never used
		idHint:    1,
	}
	k.freeBlocks = len(k.blocks)
	k.ring = k.mem[k.cmdrOff : k.cmdrOff+o.CmdrSize]
	ne.PutUint16(k.mem[mbVersion:], o.Version)
	ne.PutUint16(k.mem[mbFlags:], o.Flags)
	ne.PutUint32(k.mem[mbCmdrOff:], uint32(k.cmdrOff))
	ne.PutUint32(k.mem[mbCmdrSize:], uint32(o.CmdrSize))
	return k, nil
}

// Mem is the whole mapping, as a daemon would mmap it.
func (k *Kernel) Mem() []byte { return k.mem }

// DataOff is the mapping offset of the data area.
func (k *Kernel) DataOff() int { return k.dataOff }

// CmdrOff is the mapping offset of the command ring (cmdr_off).
func (k *Kernel) CmdrOff() int { return k.cmdrOff }

// LastEntry is the mapping offset of the last entry placed (not a PAD), so
// tests can corrupt it before a Ring sees it.
func (k *Kernel) LastEntry() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastEntry
}

// Err reports why the fake considers the ring broken, or nil.
func (k *Kernel) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// SetKickError makes later Notifier.Kick calls fail with err (nil: succeed).
func (k *Kernel) SetKickError(err error) {
	k.mu.Lock()
	k.kickErr = err
	k.mu.Unlock()
}

// InFlight is the number of commands submitted and not completed.
func (k *Kernel) InFlight() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nInflight
}

// Completed is the number of commands completed so far.
func (k *Kernel) Completed() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.completed
}

// Completions returns the completion log in the order the fake processed
// the completions (nil with NoLog).
func (k *Kernel) Completions() []Response {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Response(nil), k.log...)
}

// Do submits a command and blocks until the daemon completed it or ctx is
// done. out is the data-out payload of a write; inLen the data-in length of
// a read (not both). It returns the response and the data-in bytes. Do
// blocks while the ring or the data area is full (back-pressure) and is
// safe to call from many goroutines.
func (k *Kernel) Do(ctx context.Context, cdb, out []byte, inLen int) (Response, []byte, error) {
	done := make(chan doResult, 1)
	if _, err := k.submit(ctx, cdb, out, inLen, done); err != nil {
		return Response{}, nil, err
	}
	select {
	case r := <-done:
		return r.resp, r.resp.Data, r.err
	case <-ctx.Done():
		return Response{}, nil, ctx.Err()
	}
}

// Submit places a command and returns its cmd_id without waiting for its
// completion (see Completions, WaitIdle). It blocks while the ring or data
// area is full.
func (k *Kernel) Submit(ctx context.Context, cdb, out []byte, inLen int) (uint16, error) {
	return k.submit(ctx, cdb, out, inLen, nil)
}

// CommandSize is scsi_command_size: how many CDB bytes the kernel copies.
func CommandSize(cdb []byte) int {
	if len(cdb) == 0 {
		return 0
	}
	if cdb[0] == 0x7f { // VARIABLE_LENGTH_CMD
		if len(cdb) < 8 {
			return 8
		}
		return 8 + int(cdb[7])
	}
	return int([8]uint8{6, 10, 10, 12, 16, 12, 10, 10}[cdb[0]>>5])
}

func roundUp8(n int) int { return (n + 7) &^ 7 }

func (k *Kernel) submit(ctx context.Context, cdb, out []byte, inLen int, done chan doResult) (uint16, error) {
	if len(out) > 0 && inLen > 0 {
		return 0, errors.New("fakering: bidirectional commands are not simulated")
	}
	if inLen < 0 {
		return 0, errors.New("fakering: negative data-in length")
	}
	cdbLen := CommandSize(cdb)
	if cdbLen == 0 || len(cdb) < cdbLen {
		return 0, fmt.Errorf("fakering: CDB of %d bytes, opcode %#x needs %d", len(cdb), firstByte(cdb), cdbLen)
	}
	dataLen := max(len(out), inLen)
	nblk := (dataLen + k.blockSize - 1) / k.blockSize
	if nblk > len(k.blocks) {
		return 0, fmt.Errorf("%w: %d data bytes, data area %d", ErrTooBig, dataLen, len(k.blocks)*k.blockSize)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.spareLocked()
	for {
		if k.err != nil {
			k.spare = append(k.spare, c)
			return 0, fmt.Errorf("%w: %v", ErrBroken, k.err)
		}
		var ok bool
		c.blocks, ok = k.allocBlocksLocked(c.blocks[:0], nblk)
		if ok {
			iovCnt := countRuns(c.blocks)
			base := max(reqIov+16*iovCnt, entSize)
			size := base + roundUp8(cdbLen)
			if size > int(k.cmdrSize)/2 {
				k.freeBlocksLocked(c.blocks)
				k.spare = append(k.spare, c)
				return 0, fmt.Errorf("%w: %d-byte entry, ring %d", ErrTooBig, size, k.cmdrSize)
			}
			id, idOK := k.allocIDLocked()
			if idOK && k.spaceLocked(size) {
				k.placeCmdLocked(c, id, iovCnt, base, size, cdb[:cdbLen], out, inLen, done)
				return id, nil
			}
			k.freeBlocksLocked(c.blocks)
		}
		if err := k.waitLocked(ctx); err != nil {
			k.spare = append(k.spare, c)
			return 0, err
		}
	}
}

// spareLocked returns a recycled inflight record (its slices keep their
// capacity, so steady-state submissions allocate nothing).
// Preconditions: k.mu held.
func (k *Kernel) spareLocked() *inflight {
	if n := len(k.spare); n > 0 {
		c := k.spare[n-1]
		k.spare = k.spare[:n-1]
		return c
	}
	return new(inflight)
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// waitLocked waits for progress (a completion) or ctx.
// Preconditions: k.mu held; it is released while waiting.
func (k *Kernel) waitLocked(ctx context.Context) error {
	if k.progress == nil {
		k.progress = make(chan struct{})
	}
	ch := k.progress
	k.mu.Unlock()
	defer k.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// allocBlocksLocked takes the n lowest free data blocks (the kernel's
// find_first_zero_bit loop). Preconditions: k.mu held.
func (k *Kernel) allocBlocksLocked(blocks []int, n int) ([]int, bool) {
	if k.freeBlocks < n {
		return blocks, false
	}
	for i := k.blockHint; len(blocks) < n; i++ {
		if !k.blocks[i] {
			k.blocks[i] = true
			blocks = append(blocks, i)
		}
	}
	k.freeBlocks -= n
	if n > 0 {
		k.blockHint = blocks[n-1] + 1
	}
	return blocks, true
}

func (k *Kernel) freeBlocksLocked(blocks []int) {
	for _, b := range blocks {
		k.blocks[b] = false
		k.blockHint = min(k.blockHint, b)
	}
	k.freeBlocks += len(blocks)
}

// countRuns is the number of iovecs: adjacent blocks share one
// (new_block_to_iov).
func countRuns(blocks []int) int {
	n := 0
	for i, b := range blocks {
		if i == 0 || b != blocks[i-1]+1 {
			n++
		}
	}
	return n
}

// allocIDLocked returns the lowest free cmd_id in [1, 0xffff] (xa_alloc
// with XA_LIMIT(1, 0xffff)). Preconditions: k.mu held.
func (k *Kernel) allocIDLocked() (uint16, bool) {
	for id := k.idHint; id < len(k.cmds); id++ {
		if k.cmds[id] == nil {
			k.idHint = id
			return uint16(id), true
		}
	}
	if len(k.cmds) <= 0xffff {
		k.cmds = append(k.cmds, nil)
		k.idHint = len(k.cmds) - 1
		return uint16(k.idHint), true
	}
	return 0, false
}

// spaceLocked is is_ring_space_avail: room for the entry, plus a PAD to
// the ring end when it does not fit there, keeping one byte free to tell a
// full ring from an empty one. Preconditions: k.mu held.
func (k *Kernel) spaceLocked(size int) bool {
	head, size32 := int(k.head), int(k.cmdrSize)
	need := size
	if size32-head < size {
		need += size32 - head
	}
	used := (head - int(k.lastCleaned) + size32) % size32
	return size32-used-1 >= need
}

// insertPadLocked is ring_insert_padding. Preconditions: k.mu held.
func (k *Kernel) insertPadLocked(size int) {
	toEnd := int(k.cmdrSize - k.head)
	if toEnd >= size {
		return
	}
	h := k.ring[k.head:]
	ne.PutUint32(h, uint32(toEnd)|opPad)
	ne.PutUint16(h[hdrCmdID:], 0)
	h[hdrKflags], h[hdrUflags] = 0, 0
	k.head = 0
	storeHead(k.mem, k.head)
}

func (k *Kernel) placeCmdLocked(c *inflight, id uint16, iovCnt, base, size int, cdb, out []byte, inLen int, done chan doResult) {
	k.insertPadLocked(size)
	e := k.ring[k.head : int(k.head)+size]
	clear(e)
	// Data: out is copied into the blocks, iovecs cover data_length bytes
	// (the last one short), adjacent blocks merged (new_block_to_iov).
	dataLen := max(len(out), inLen)
	c.iovs = c.iovs[:0]
	for i, b := range c.blocks {
		n := min(k.blockSize, dataLen-i*k.blockSize)
		off := k.dataOff + b*k.blockSize
		if len(out) > 0 {
			copy(k.mem[off:off+n], out[i*k.blockSize:])
		}
		if i == 0 || b != c.blocks[i-1]+1 {
			c.iovs = append(c.iovs, [2]int{off, 0})
		}
		c.iovs[len(c.iovs)-1][1] += n
	}
	for i, v := range c.iovs {
		o := reqIov + 16*i
		ne.PutUint64(e[o:], uint64(v[0]))
		ne.PutUint64(e[o+8:], uint64(v[1]))
	}
	ne.PutUint32(e[reqIovCnt:], uint32(iovCnt))
	ne.PutUint16(e[hdrCmdID:], id)
	ne.PutUint32(e, uint32(size)|opCmd)
	cdbOff := k.cmdrOff + int(k.head) + base
	copy(k.mem[cdbOff:], cdb)
	ne.PutUint64(e[reqCdbOff:], uint64(cdbOff))

	c.id, c.inLen, c.done = id, inLen, done
	c.gather = done != nil || !k.noLog
	k.cmds[id] = c
	k.nInflight++
	k.lastEntry = k.cmdrOff + int(k.head)
	k.head = (k.head + uint32(size)) % k.cmdrSize
	storeHead(k.mem, k.head)
	k.notifyLocked()
}

// SubmitTMR places a TMR notification entry (queue_tmr_ring) naming the
// given cmd_ids; it blocks while the ring is full.
func (k *Kernel) SubmitTMR(ctx context.Context, kind uint8, ids []uint16) error {
	size := roundUp8(tmrCmdIDs + 2*len(ids))
	return k.place(ctx, size, func(e []byte) {
		ne.PutUint32(e, uint32(size)|opTMR)
		e[tmrType] = kind
		ne.PutUint32(e[tmrCmdCnt:], uint32(len(ids)))
		for i, id := range ids {
			ne.PutUint16(e[tmrCmdIDs+2*i:], id)
		}
	})
}

// SubmitRaw places a zeroed entry of size bytes (a multiple of 8) with an
// arbitrary opcode in len_op, as a newer kernel might. At completion the
// fake skips entries with an opcode other than PAD, CMD and TMR only if the
// daemon flagged them TCMU_UFLAG_UNKNOWN_OP; otherwise the ring is broken.
func (k *Kernel) SubmitRaw(ctx context.Context, op uint8, size int) error {
	if size%8 != 0 || size < 8 || op > 7 {
		return fmt.Errorf("fakering: raw entry of %d bytes, op %d", size, op)
	}
	return k.place(ctx, size, func(e []byte) { ne.PutUint32(e, uint32(size)|uint32(op)) })
}

func (k *Kernel) place(ctx context.Context, size int, fill func(e []byte)) error {
	if size > int(k.cmdrSize)/2 {
		return fmt.Errorf("%w: %d-byte entry, ring %d", ErrTooBig, size, k.cmdrSize)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		if k.err != nil {
			return fmt.Errorf("%w: %v", ErrBroken, k.err)
		}
		if k.spaceLocked(size) {
			break
		}
		if err := k.waitLocked(ctx); err != nil {
			return err
		}
	}
	k.insertPadLocked(size)
	e := k.ring[k.head : int(k.head)+size]
	clear(e)
	fill(e)
	k.lastEntry = k.cmdrOff + int(k.head)
	k.head = (k.head + uint32(size)) % k.cmdrSize
	storeHead(k.mem, k.head)
	k.notifyLocked()
	return nil
}

// WaitIdle blocks until no command is in flight, ctx is done or the ring
// is broken.
func (k *Kernel) WaitIdle(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for k.nInflight > 0 {
		if k.err != nil {
			return fmt.Errorf("%w: %v", ErrBroken, k.err)
		}
		if err := k.waitLocked(ctx); err != nil {
			return err
		}
	}
	return nil
}

// notifyLocked is uio_event_notify. Preconditions: k.mu held.
func (k *Kernel) notifyLocked() {
	k.events++
	for _, n := range k.notifiers {
		select {
		case n.ch <- struct{}{}:
		default:
		}
	}
}

// progressLocked wakes everything waiting for ring or data space.
// Preconditions: k.mu held.
func (k *Kernel) progressLocked() {
	if k.progress != nil {
		close(k.progress)
		k.progress = nil
	}
}

// breakLocked marks the ring broken and fails every pending Do.
// Preconditions: k.mu held.
func (k *Kernel) breakLocked(err error) {
	if k.err != nil {
		return
	}
	k.err = err
	for _, c := range k.cmds {
		if c != nil && c.done != nil {
			c.done <- doResult{err: fmt.Errorf("%w: %v", ErrBroken, err)}
			c.done = nil
		}
	}
	k.progressLocked()
}

// handleCompletionsLocked is tcmu_handle_completions. Preconditions: k.mu
// held.
func (k *Kernel) handleCompletionsLocked() {
	if k.err != nil {
		return
	}
	tail := loadTail(k.mem)
	if tail >= k.cmdrSize || tail%8 != 0 {
		k.breakLocked(fmt.Errorf("cmd_tail %d outside the %d-byte ring", tail, k.cmdrSize))
		return
	}
	// The daemon may only retire entries we placed.
	if dist(k.lastCleaned, tail, k.cmdrSize) > dist(k.lastCleaned, k.head, k.cmdrSize) {
		k.breakLocked(fmt.Errorf("cmd_tail %d beyond cmd_head %d", tail, k.head))
		return
	}
	progressed := false
	for k.lastCleaned != tail {
		e := k.ring[k.lastCleaned:]
		lenOp := ne.Uint32(e)
		n := lenOp &^ 7
		if n == 0 || n > k.cmdrSize-k.lastCleaned {
			k.breakLocked(fmt.Errorf("entry at %d: len_op %#x", k.lastCleaned, lenOp))
			return
		}
		e = e[:n]
		progressed = true
		switch op := lenOp & 7; op {
		case opPad, opTMR:
		case opCmd:
			if !k.completeLocked(e) {
				return
			}
		default:
			if e[hdrUflags]&uflagUnknownOp == 0 {
				k.breakLocked(fmt.Errorf("entry at %d: op %d not flagged TCMU_UFLAG_UNKNOWN_OP", k.lastCleaned, op))
				return
			}
		}
		k.lastCleaned = (k.lastCleaned + n) % k.cmdrSize
	}
	if progressed {
		k.progressLocked()
	}
}

func dist(from, to, size uint32) uint32 { return (to + size - from) % size }

// completeLocked is tcmu_handle_completion for one CMD entry; false when
// the ring is broken. Preconditions: k.mu held.
func (k *Kernel) completeLocked(e []byte) bool {
	id := ne.Uint16(e[hdrCmdID:])
	var c *inflight
	if int(id) < len(k.cmds) {
		c = k.cmds[id]
	}
	if c == nil {
		k.breakLocked(fmt.Errorf("cmd_id %d not found, ring is broken", id))
		return false
	}
	uflags := e[hdrUflags]
	if uflags&uflagKeepBuf != 0 {
		k.breakLocked(fmt.Errorf("cmd_id %d: TCMU_UFLAG_KEEP_BUF is not simulated", id))
		return false
	}
	r := Response{ID: id, Status: e[rspStatus]}
	if uflags&uflagUnknownOp != 0 {
		r.UnknownOp = true
		r.Status = StatusCheckCondition
	} else {
		readLen := c.inLen
		if c.inLen > 0 && uflags&uflagReadLen != 0 {
			if rl := ne.Uint32(e[rspReadLen:]); rl != 0 {
				r.ReadLenSet = true
				readLen = min(readLen, int(rl))
			}
		}
		if c.inLen > 0 {
			r.ReadLen = readLen
		}
		if r.Status == StatusCheckCondition && c.gather {
			r.Sense = append([]byte(nil), e[rspSense:rspSense+senseLen]...)
		}
		// gather_data_area: data-in is returned unless CHECK CONDITION
		// without a valid read_len.
		if c.inLen > 0 && c.gather && (r.Status != StatusCheckCondition || r.ReadLenSet) {
			r.Data = make([]byte, 0, readLen)
			left := readLen
			for _, v := range c.iovs {
				n := min(left, v[1])
				r.Data = append(r.Data, k.mem[v[0]:v[0]+n]...)
				left -= n
			}
		}
	}
	k.freeBlocksLocked(c.blocks)
	k.cmds[id] = nil
	k.idHint = min(k.idHint, int(id))
	k.nInflight--
	k.completed++
	if !k.noLog {
		k.log = append(k.log, r)
	}
	if c.done != nil {
		c.done <- doResult{resp: r}
	}
	c.done = nil
	k.spare = append(k.spare, c)
	return true
}

// Notifier is the daemon's end of the UIO fd: Wait returns after each new
// event (a submission) and Kick makes the fake process completions,
// synchronously, like a write to /dev/uioN runs tcmu_irqcontrol. Like an
// open UIO fd it only sees events after its creation. Wait must not be
// called from two goroutines at once.
type Notifier struct {
	k    *Kernel
	ch   chan struct{}
	seen uint64
}

// Notifier opens a new "UIO fd".
func (k *Kernel) Notifier() *Notifier {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := &Notifier{k: k, ch: make(chan struct{}, 1), seen: k.events}
	k.notifiers = append(k.notifiers, n)
	return n
}

// Wait blocks until an event newer than the last one seen, or ctx is done.
func (n *Notifier) Wait(ctx context.Context) error {
	for {
		n.k.mu.Lock()
		ev := n.k.events
		n.k.mu.Unlock()
		if ev != n.seen {
			n.seen = ev
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ch:
		}
	}
}

// Kick processes completions up to cmd_tail.
func (n *Notifier) Kick() error {
	k := n.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kickErr != nil {
		return k.kickErr
	}
	k.handleCompletionsLocked()
	return nil
}

// SAM status values ResetRing completes commands with.
const (
	StatusBusy = 0x08
)

// ResetRing is tcmu_reset_ring (configfs action/reset_ring): the kernel
// completes every command in flight itself, with BUSY for level 1 or
// CHECK CONDITION for level 2, frees their data, sets cmd_head, cmd_tail and
// its cleaned position to 0 and clears the broken mark.
func (k *Kernel) ResetRing(level int) error {
	if level != 1 && level != 2 {
		return fmt.Errorf("fakering: reset level %d, want 1 or 2", level)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	status := uint8(StatusBusy)
	if level == 2 {
		status = StatusCheckCondition
	}
	for id, c := range k.cmds {
		if c == nil {
			continue
		}
		r := Response{ID: uint16(id), Status: status, Reset: true}
		k.freeBlocksLocked(c.blocks)
		k.cmds[id] = nil
		k.nInflight--
		k.completed++
		if !k.noLog {
			k.log = append(k.log, r)
		}
		if c.done != nil {
			c.done <- doResult{resp: r}
		}
		c.done = nil
		k.spare = append(k.spare, c)
	}
	k.idHint = 1
	k.head, k.lastCleaned = 0, 0
	storeTail(k.mem, 0)
	storeHead(k.mem, 0)
	k.err = nil
	k.progressLocked()
	return nil
}

// Tail returns the shared cmd_tail (for tests).
func (k *Kernel) Tail() uint32 { return loadTail(k.mem) }

// SetTail overwrites the shared cmd_tail, as a previous daemon might have
// left it (for tests). It does not move the fake's cleaned position.
func (k *Kernel) SetTail(v uint32) { storeTail(k.mem, v) }
