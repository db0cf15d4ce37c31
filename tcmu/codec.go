// SPDX-License-Identifier: Apache-2.0

package tcmu

// This file is the codec: the TCMU ring ABI as single-threaded code. The
// Ring that drives it is in ring.go, the executors that run it under the
// Ring's lock in executor.go, the UIO descriptor in uio.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// ErrCorruptRing reports a mailbox or ring entry that breaks the TCMU ring
// protocol: a length, offset or iovec that does not fit, a command id
// already in flight. The ring is shared memory and untrusted; Run stops on
// it (stop the LUN) rather than guess.
var ErrCorruptRing = errors.New("corrupt command ring")

// ErrVersion reports a mailbox whose version is not TCMU_MAILBOX_VERSION 2.
var ErrVersion = errors.New("unsupported tcmu mailbox version")

// ErrRingReset reports that the kernel reset the ring under a running Ring
// (action/reset_ring, tcmu_reset_ring): it completed every command itself
// and set cmd_head and cmd_tail to 0. Nothing more is written into the
// ring; completions of the old commands are discarded. Serve the ring with
// a new Ring. Reset rings only while no Ring runs on them: a reset that
// races with a completion cannot always be told apart from corruption.
var ErrRingReset = errors.New("command ring reset by the kernel")

// codec speaks the TCMU ring ABI over the shared mapping: it parses
// entries up to cmd_head, copying each into a Cmd for its sink, writes
// responses into the slots at the tail, stores cmd_tail and kicks. It is
// single-threaded code: no goroutines, no scheduling, no locks, and not
// safe for concurrent use (like gVisor's xdp queues). Its one owner is the
// Ring whose codec field it is; the goroutine holding Ring.mu calls it
// (see Ring for which goroutines take mu), and its sink is called back
// on that goroutine, still under the lock.
type codec struct {
	mem     []byte
	ring    []byte // mem[cmdr_off : cmdr_off+cmdr_size]
	cmdrOff uint64
	size    uint32 // cmdr_size
	dataOff uint64 // start of the data area: cmdr_off + cmdr_size
	flags   uint16
	caps    Caps
	ooo     bool
	n       Notifier
	log     *slog.Logger
	st      *ringCounters
	sink    sink

	pos      uint32 // next entry to parse, relative to the ring start
	tail     uint32 // our cmd_tail
	slots    slotQueue
	inflight map[uint16]*Cmd
	free     []*Cmd
	pending  []*Cmd // completions taken in this flush
	tmrCmds  []*Cmd
	// noWrites is set when the shared state can no longer be trusted (a
	// ring reset, an impossible cmd_head) or the kernel can no longer be
	// told (a failed kick): completions are then recycled unwritten.
	noWrites bool
}

// slot is a consumed ring entry that cmd_tail has not passed yet. Its
// offset and length are our own copy: the shared bytes are never trusted
// twice.
type slot struct {
	off, len uint32
	isCmd    bool
	cmd      *Cmd // the entry's own command; in-order mode only
}

// sink receives what codec.parse takes from the ring.
type sink interface {
	// takeCmd gets a new command, already counted in flight.
	takeCmd(c *Cmd)
	// takeTMR gets a TMR entry; aborted is valid during the call.
	takeTMR(kind TMRType, aborted []*Cmd)
}

// init validates the mailbox at the start of mem and prepares the codec
// to start at cmd_tail.
func (d *codec) init(mem []byte, n Notifier, log *slog.Logger, st *ringCounters, s sink) error {
	if !aligned(mem) {
		return fmt.Errorf("tcmu: %w: mapping of %d bytes is shorter than the %d-byte mailbox or not 4-byte aligned",
			ErrCorruptRing, len(mem), mbSize)
	}
	mb := mailbox(mem[:mbSize])
	if v := mb.version(); v != mailboxVersion {
		return fmt.Errorf("tcmu: %w: mailbox version %d, want %d", ErrVersion, v, mailboxVersion)
	}
	off, size := mb.cmdrOff(), mb.cmdrSize()
	switch {
	case off < mbSize || off%opAlign != 0:
		return fmt.Errorf("tcmu: %w: cmdr_off %d overlaps the mailbox or is not %d-byte aligned",
			ErrCorruptRing, off, opAlign)
	case size == 0 || size%opAlign != 0:
		return fmt.Errorf("tcmu: %w: cmdr_size %d is not a positive multiple of %d", ErrCorruptRing, size, opAlign)
	case uint64(off)+uint64(size) > uint64(len(mem)):
		return fmt.Errorf("tcmu: %w: command ring [%d, %d) beyond the %d-byte mapping",
			ErrCorruptRing, off, uint64(off)+uint64(size), len(mem))
	}
	tail := loadCmdTail(mem)
	if tail >= size || tail%opAlign != 0 {
		return fmt.Errorf("tcmu: %w: cmd_tail %d outside the %d-byte ring or misaligned", ErrCorruptRing, tail, size)
	}
	*d = codec{
		mem:      mem,
		ring:     mem[off : off+size],
		cmdrOff:  uint64(off),
		size:     size,
		dataOff:  uint64(off) + uint64(size),
		flags:    mb.flags(),
		caps:     Caps(mb.flags()),
		n:        n,
		log:      log,
		st:       st,
		sink:     s,
		pos:      tail,
		tail:     tail,
		inflight: make(map[uint16]*Cmd),
	}
	d.ooo = d.caps.Has(CapOOOC)
	if unknown := d.caps &^ (CapOOOC | CapReadLen | CapTMR | CapKeepBuf); unknown != 0 {
		log.Debug("tcmu: unknown mailbox flags ignored", "flags", d.caps.String())
	}
	return nil
}

// corrupt builds an error wrapping ErrCorruptRing.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("tcmu: %w: "+format, append([]any{ErrCorruptRing}, args...)...)
}

// parse parses every entry from our position up to cmd_head, as the kernel
// placed them in queue_cmd_ring and queue_tmr_ring, and gives each to the
// sink.
func (d *codec) parse() error {
	head, err := d.checkShared()
	if err != nil {
		return err
	}
	for d.pos != head {
		off := d.pos
		// Bytes between our position and head, and up to the ring end:
		// an entry never wraps (the kernel inserts a PAD instead).
		avail := (uint64(head) + uint64(d.size) - uint64(off)) % uint64(d.size)
		toEnd := d.size - off // >= 8: both are multiples of 8
		e := entry(d.ring[off:])
		lenOp := e.lenOp()
		n := entryLen(lenOp)
		if n == 0 || n > toEnd || uint64(n) > avail {
			return corrupt("entry at %d: len_op %#x does not fit (%d bytes to the ring end, %d to cmd_head)",
				off, lenOp, toEnd, avail)
		}
		e = e[:n:n]
		switch entryOp(lenOp) {
		case opPad:
			d.slots.push(slot{off: off, len: n})
			d.st.pads.Add(1)
		case opCmd:
			if err := d.parseCmd(e, off); err != nil {
				return err
			}
		case opTMR:
			if err := d.parseTMR(e, off); err != nil {
				return err
			}
		default:
			// A kernel newer than us: flag it so the kernel knows we
			// did not act on it, and retire it like a PAD.
			e.setUflags(e.uflags() | uflagUnknownOp)
			d.slots.push(slot{off: off, len: n})
			d.st.unknown.Add(1)
			d.log.Debug("tcmu: unknown ring entry flagged", "op", entryOp(lenOp), "offset", off)
		}
		d.pos = uint32((uint64(off) + uint64(n)) % uint64(d.size))
	}
	return nil
}

// dist is how far to is ahead of from in a ring of size bytes.
func dist(from, to, size uint32) uint32 {
	return uint32((uint64(to) + uint64(size) - uint64(from)) % uint64(size))
}

// checkShared loads cmd_head and checks it, and cmd_tail, against our
// position. Nobody but us writes cmd_tail, except tcmu_reset_ring, which
// sets both to 0: a changed cmd_tail, or a head behind our position with
// cmd_tail at 0, means the ring was reset.
func (d *codec) checkShared() (head uint32, err error) {
	if t := loadCmdTail(d.mem); t != d.tail {
		d.noWrites = true
		return 0, fmt.Errorf("tcmu: %w: cmd_tail is %d, we left it at %d", ErrRingReset, t, d.tail)
	}
	head = loadCmdHead(d.mem)
	if head >= d.size || head%opAlign != 0 {
		d.noWrites = true
		return 0, corrupt("cmd_head %d outside the %d-byte ring or misaligned", head, d.size)
	}
	// The entries we consumed but have not retired are in use: the
	// kernel's head cannot be behind our position (it keeps a byte free to
	// tell a full ring from an empty one).
	if dist(d.tail, head, d.size) < dist(d.tail, d.pos, d.size) {
		if d.tail == 0 {
			d.noWrites = true
			return 0, fmt.Errorf("tcmu: %w: cmd_head %d behind our position %d", ErrRingReset, head, d.pos)
		}
		d.noWrites = true
		return 0, corrupt("cmd_head %d is behind our position %d (cmd_tail %d)", head, d.pos, d.tail)
	}
	return head, nil
}

// parseCmd validates a CMD entry, copies it into a Cmd and hands it to
// the sink.
func (d *codec) parseCmd(e entry, off uint32) error {
	if len(e) < entSize {
		return corrupt("CMD entry at %d: %d bytes, smaller than tcmu_cmd_entry (%d)", off, len(e), entSize)
	}
	nData, nBidi, nDIF := uint64(e.iovCnt()), uint64(e.iovBidiCnt()), uint64(e.iovDifCnt())
	nIov := nData + nBidi + nDIF
	if reqIov+nIov*iovSize > uint64(len(e)) {
		return corrupt("CMD entry at %d: %d+%d+%d iovecs overflow its %d bytes", off, nData, nBidi, nDIF, len(e))
	}
	cdb, err := d.cdb(e.cdbOff())
	if err != nil {
		return fmt.Errorf("%w (CMD entry at %d)", err, off)
	}
	id := e.cmdID()
	if _, dup := d.inflight[id]; dup {
		return corrupt("CMD entry at %d: cmd_id %d already in flight", off, id)
	}
	c := d.newCmd()
	memLen := uint64(len(d.mem))
	for i := range int(nIov) {
		base, n := e.iov(i)
		if base < d.dataOff || base > memLen || n > memLen-base {
			d.free = append(d.free, c)
			c.reset()
			return corrupt("CMD entry at %d: iovec %d [%#x +%#x] outside the data area [%#x, %#x)",
				off, i, base, n, d.dataOff, memLen)
		}
		c.iovs = append(c.iovs, d.mem[base:base+n:base+n])
	}
	c.ID = id
	nc := copy(c.cdb[:], cdb)
	c.CDB = c.cdb[:nc:nc]
	if nData > 0 {
		c.Data = c.iovs[:nData:nData]
	}
	if nBidi > 0 {
		c.BidiData = c.iovs[nData : nData+nBidi : nData+nBidi]
	}
	if nDIF > 0 {
		c.DIF = c.iovs[nData+nBidi : nIov : nIov]
	}
	d.inflight[id] = c
	s := slot{off: off, len: uint32(len(e)), isCmd: true}
	if !d.ooo {
		s.cmd = c
	}
	d.slots.push(s)
	d.st.commands.Add(1)
	d.st.inflight.Add(1)
	d.sink.takeCmd(c)
	return nil
}

// cdb returns the CDB at mapping offset o, which must lie in the command
// ring, with the length the kernel copied (scsi_command_size).
func (d *codec) cdb(o uint64) ([]byte, error) {
	end := d.cmdrOff + uint64(d.size)
	if o < d.cmdrOff || o >= end {
		return nil, corrupt("cdb_off %#x outside the command ring [%#x, %#x)", o, d.cmdrOff, end)
	}
	n := uint64(cdbGroupLen[d.mem[o]>>5])
	if d.mem[o] == variableLengthCDB {
		if o+8 > end {
			return nil, corrupt("variable-length CDB at %#x crosses the ring end", o)
		}
		n = 8 + uint64(d.mem[o+7])
	}
	if o+n > end {
		return nil, corrupt("%d-byte CDB at %#x crosses the ring end", n, o)
	}
	return d.mem[o : o+n], nil
}

// parseTMR marks the commands a TMR entry names as aborted and tells the
// sink.
func (d *codec) parseTMR(e entry, off uint32) error {
	if len(e) < tmrEntSize {
		return corrupt("TMR entry at %d: %d bytes, smaller than tcmu_tmr_entry (%d)", off, len(e), tmrEntSize)
	}
	n := uint64(e.tmrCmdCnt())
	if tmrCmdIDs+2*n > uint64(len(e)) {
		return corrupt("TMR entry at %d: %d cmd_ids overflow its %d bytes", off, n, len(e))
	}
	kind := TMRType(e.tmrType())
	d.tmrCmds = d.tmrCmds[:0]
	for i := range int(n) {
		c, ok := d.inflight[e.tmrCmdID(i)]
		if ok && !c.aborted.Load() {
			c.aborted.Store(true)
			d.tmrCmds = append(d.tmrCmds, c)
		}
	}
	d.slots.push(slot{off: off, len: uint32(len(e))})
	d.st.tmrs.Add(1)
	if d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("tcmu: TMR", "op", kind.String(), "cmd_ids", n, "aborted", len(d.tmrCmds))
	}
	d.sink.takeTMR(kind, d.tmrCmds)
	clear(d.tmrCmds)
	return nil
}

// newCmd takes a Cmd from the free list or allocates one.
func (d *codec) newCmd() *Cmd {
	if n := len(d.free); n > 0 {
		c := d.free[n-1]
		d.free[n-1] = nil
		d.free = d.free[:n-1]
		return c
	}
	return &Cmd{}
}

// flush takes the completions in list (linked through Cmd.next, in
// completion order), writes responses into the slots at the tail, retires
// PAD, TMR and unknown entries there, and then publishes cmd_tail. It
// reports whether cmd_tail moved: then the kernel must be kicked (kick),
// which the Ring does after releasing its lock, so that the kernel's copy
// of READ data inside the kick does not hold up other executors.
func (d *codec) flush(list *Cmd) (moved bool, err error) {
	for c := list; c != nil; {
		next := c.next
		c.next = nil
		c.ready = true
		d.pending = append(d.pending, c)
		c = next
	}
	defer func() {
		clear(d.pending)
		d.pending = d.pending[:0]
	}()
	if !d.noWrites && d.slots.len() > 0 {
		if _, err := d.checkShared(); err != nil {
			d.discard()
			return false, err
		}
	}
	if d.noWrites {
		d.discard()
		return false, nil
	}

	taken := 0
	for d.slots.len() > 0 {
		s := d.slots.front()
		if s.isCmd {
			var c *Cmd
			if d.ooo {
				if taken == len(d.pending) {
					break
				}
				c = d.pending[taken]
				taken++
			} else {
				if !s.cmd.ready {
					break
				}
				c = s.cmd
			}
			d.writeResponse(s.off, c)
			d.release(c)
		}
		d.tail = uint32((uint64(d.tail) + uint64(s.len)) % uint64(d.size))
		d.slots.pop()
		moved = true
	}
	if d.ooo && taken != len(d.pending) {
		// Every command in flight owns one CMD slot, so this cannot happen.
		panic("tcmu: more completions than command slots")
	}
	if !moved {
		return false, nil
	}
	storeCmdTail(d.mem, d.tail)
	d.st.batches.Add(1)
	return true, nil
}

// kick tells the kernel that cmd_tail moved. It needs no lock: the kernel
// serialises kicks (tcmu_irqcontrol takes the device's cmdr_lock), and a
// kick that finds nothing new is a no-op there. A failed kick is returned;
// the caller then stops writes (noWrites, under the lock).
//
// The kick is counted before it is made: once the kernel has it, the
// initiator can see the command complete, and whoever then reads Stats
// must see the kick counted. A failed kick is uncounted again.
func (d *codec) kick() error {
	d.st.kicks.Add(1)
	if err := d.n.Kick(); err != nil {
		d.st.kicks.Add(^uint64(0))
		return fmt.Errorf("tcmu: kick the kernel: %w", err)
	}
	return nil
}

// discard recycles completed commands without writing anything: after a
// ring reset the kernel no longer knows them. d.pending holds the batch
// just taken; in-order mode may also hold ready commands waiting in their
// slots for an older one.
func (d *codec) discard() {
	for d.slots.len() > 0 {
		if c := d.slots.front().cmd; c != nil && c.ready && c.state.Load() == cmdCompleted {
			d.release(c)
		}
		d.slots.pop()
	}
	for _, c := range d.pending {
		if c.state.Load() == cmdCompleted { // not released just above
			d.release(c)
		}
	}
}

// writeResponse writes the response of c into the CMD slot at off (which
// may have carried another command: out-of-order completion), as
// tcmu_handle_completion reads it.
func (d *codec) writeResponse(off uint32, c *Cmd) {
	e := entry(d.ring[off : off+entSize])
	e.setCmdID(c.ID)
	var uflags uint8
	var readLen uint32
	if c.shortRead && d.caps.Has(CapReadLen) {
		uflags |= uflagReadLen
		readLen = c.readLen
	}
	e.setUflags(uflags)
	e.setStatus(c.status)
	e.setReadLen(readLen)
	sb := e.sense()
	n := copy(sb, c.sense[:c.senseLen])
	clear(sb[n:])
	d.st.completions.Add(1)
}

// release retires a completed command and recycles it.
func (d *codec) release(c *Cmd) {
	delete(d.inflight, c.ID)
	d.st.inflight.Add(^uint64(0))
	c.reset()
	d.free = append(d.free, c)
}

// slotQueue is a growable FIFO of slots (a ring buffer), so that retiring
// entries allocates nothing in steady state.
type slotQueue struct {
	buf  []slot
	head int
	n    int
}

func (q *slotQueue) len() int { return q.n }

func (q *slotQueue) front() slot { return q.buf[q.head] }

func (q *slotQueue) push(s slot) {
	if q.n == len(q.buf) {
		nb := make([]slot, max(16, 2*len(q.buf)))
		for i := range q.n {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = s
	q.n++
}

func (q *slotQueue) pop() {
	q.buf[q.head] = slot{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
}
