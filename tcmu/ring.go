package tcmu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
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

// ErrDrainTimeout reports that Run gave up waiting for in-flight commands
// after its context was done (RingOptions.DrainTimeout). Those commands were
// never completed; the kernel times them out (cmd_time_out).
var ErrDrainTimeout = errors.New("in-flight commands not completed before the drain timeout")

// DefaultDrainTimeout is used when RingOptions.DrainTimeout is zero. It is
// well below the kernel's default cmd_time_out of 30 s.
const DefaultDrainTimeout = 10 * time.Second

// Notifier is how a Ring waits for and signals the kernel: the UIO fd in
// production, the fake kernel in tests.
type Notifier interface {
	// Wait blocks until the kernel kicked (a 4-byte read from the UIO fd
	// returned) or ctx is done, and then returns ctx's error.
	Wait(ctx context.Context) error
	// Kick tells the kernel that cmd_tail moved (a 4-byte write to the UIO
	// fd, which makes the kernel run tcmu_handle_completions).
	Kick() error
}

// Handler receives the commands and TMR notifications of a Ring. Both
// methods are called by Run's goroutines (the ring goroutine or the UIO
// waiter), one call at a time with the ring locked, and must not block.
type Handler interface {
	// Handle is called for each new command. It must not block: hand the
	// command to a worker. Exactly one Ring.Complete(c, ...) must follow,
	// from any goroutine (also from within Handle).
	Handle(c *Cmd)
	// TMR is called for a TMR entry, after the commands it names that are
	// still in flight were marked Aborted. aborted is only valid during the
	// call. It may be a no-op: aborted commands must still be completed.
	TMR(kind TMRType, aborted []*Cmd)
}

// RingOptions configure a Ring.
type RingOptions struct {
	// Logger receives debug logs (TMRs, unknown entries); nil discards.
	Logger *slog.Logger
	// DrainTimeout is how long Run waits for in-flight commands after its
	// context is done or the ring failed: 0 means DefaultDrainTimeout, a
	// negative value not to wait.
	DrainTimeout time.Duration
}

// RingStats counts what a Ring did since NewRing.
type RingStats struct {
	Commands    uint64 // CMD entries handed to the Handler
	Pads        uint64 // PAD entries skipped
	TMRs        uint64 // TMR entries seen
	UnknownOps  uint64 // entries with an unknown opcode (flagged TCMU_UFLAG_UNKNOWN_OP)
	Completions uint64 // responses written into the ring
	Batches     uint64 // cmd_tail stores (each followed by one kick)
	// DirectBatches are the Batches written by a goroutine completing a
	// command or by the UIO waiter rather than by the ring goroutine.
	DirectBatches uint64
	// DirectPolls are the Wakeups the UIO waiter served itself, without
	// waking the ring goroutine.
	DirectPolls uint64
	Kicks       uint64 // successful Notifier.Kick calls
	Wakeups     uint64 // kernel notifications received (Notifier.Wait returns)
	InFlight    uint64 // commands handed out and not yet written back
}

// Ring serves the command ring of one TCMU device. Run owns the ring: it
// reads cmd_head, parses entries, writes responses and cmd_tail and kicks
// the kernel, one goroutine at a time under a lock: its UIO waiter when
// the kernel signals and the ring is free, else its ring goroutine.
// Workers give their results back with Complete, which writes them itself
// when the ring is free and never waits for it.
//
// Completions are out of order when the kernel advertises CapOOOC (current
// kernels do: flags 0xf on 6.1): each response is written into the oldest
// unretired CMD slot with its cmd_id rewritten, as the kernel's
// tcmu_handle_completions walks slots in ring order, skips PAD and TMR
// entries and looks commands up by hdr.cmd_id. Without CapOOOC a response
// waits until every older command is done and is written into its own
// slot. Either way a batch of responses ends with one cmd_tail store and
// one kick.
//
// A new Ring resumes at cmd_tail and serves again every entry from there:
// the slots a batch writes are exactly those it retires, so this is exact
// unless the previous owner died in the middle of a batch, after writing
// responses (which overlay the request fields) and before storing
// cmd_tail. Those slots then read as garbage (ErrCorruptRing, most
// likely); resetting the ring (Device.Recover) is the safe restart.
type Ring struct {
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
	drainTO time.Duration

	running atomic.Bool

	// done is a lock-free stack of completed commands (linked through
	// Cmd.next), pushed by Complete and taken whole by flush.
	done atomic.Pointer[Cmd]
	// wake has room for one token: Complete sends one without blocking
	// when it could not flush its push itself, so a push is never missed.
	wake chan struct{}
	// busy counts the commands handed to the Handler and not yet
	// completed. Complete writes directly only the last of them: while
	// others are still being served, their completions are batched into
	// one kick by the ring goroutine (each kick is a system call in which
	// the kernel takes the ring's lock).
	busy atomic.Int64

	// mu guards the fields below. Whoever parses new entries or writes
	// responses holds it. While Run serves (direct) and no command is
	// being served (busy is 0), the UIO waiter that finds mu free parses
	// the new entries itself, and the goroutine completing the last
	// command being served writes the completions and kicks the kernel
	// itself; otherwise both hand over to the ring goroutine, which
	// batches. On an idle ring that spares two of the three goroutine
	// hand-offs a command used to cost (waiter -> ring goroutine ->
	// worker -> ring goroutine): the QD1 case. Holding mu never blocks
	// on anything but the Handler and the kick.
	mu sync.Mutex
	// direct is set while the ring goroutine serves; drain and after
	// leave every flush to the ring goroutine, so that nothing writes
	// into the ring once Run returned.
	direct bool
	// asyncErr is the error of a poll or flush made by the UIO waiter or
	// by Complete, for the ring goroutine to return.
	asyncErr error
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

	st struct {
		commands, pads, tmrs, unknown, completions atomic.Uint64
		batches, kicks, wakeups, inflight          atomic.Uint64
		directBatches, directPolls                 atomic.Uint64
	}
}

// slot is a consumed ring entry that cmd_tail has not passed yet. Its
// offset and length are our own copy: the shared bytes are never trusted
// twice.
type slot struct {
	off, len uint32
	isCmd    bool
	cmd      *Cmd // the entry's own command; in-order mode only
}

// NewRing validates the mailbox at the start of mem (the whole UIO mapping:
// mailbox, command ring, data area) and returns a Ring that starts at the
// mailbox's cmd_tail, so that entries a previous owner left unfinished are
// served again. It does not write to mem. Nothing else may serve the same
// ring while the Ring runs.
func NewRing(mem []byte, n Notifier, opts RingOptions) (*Ring, error) {
	if n == nil {
		return nil, errors.New("tcmu: NewRing: nil Notifier")
	}
	if !aligned(mem) {
		return nil, fmt.Errorf("tcmu: %w: mapping of %d bytes is shorter than the %d-byte mailbox or not 4-byte aligned",
			ErrCorruptRing, len(mem), mbSize)
	}
	mb := mailbox(mem[:mbSize])
	if v := mb.version(); v != mailboxVersion {
		return nil, fmt.Errorf("tcmu: %w: mailbox version %d, want %d", ErrVersion, v, mailboxVersion)
	}
	off, size := mb.cmdrOff(), mb.cmdrSize()
	switch {
	case off < mbSize || off%opAlign != 0:
		return nil, fmt.Errorf("tcmu: %w: cmdr_off %d overlaps the mailbox or is not %d-byte aligned",
			ErrCorruptRing, off, opAlign)
	case size == 0 || size%opAlign != 0:
		return nil, fmt.Errorf("tcmu: %w: cmdr_size %d is not a positive multiple of %d", ErrCorruptRing, size, opAlign)
	case uint64(off)+uint64(size) > uint64(len(mem)):
		return nil, fmt.Errorf("tcmu: %w: command ring [%d, %d) beyond the %d-byte mapping",
			ErrCorruptRing, off, uint64(off)+uint64(size), len(mem))
	}
	tail := loadCmdTail(mem)
	if tail >= size || tail%opAlign != 0 {
		return nil, fmt.Errorf("tcmu: %w: cmd_tail %d outside the %d-byte ring or misaligned", ErrCorruptRing, tail, size)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := opts.DrainTimeout
	if d == 0 {
		d = DefaultDrainTimeout
	}
	r := &Ring{
		mem:      mem,
		ring:     mem[off : off+size],
		cmdrOff:  uint64(off),
		size:     size,
		dataOff:  uint64(off) + uint64(size),
		flags:    mb.flags(),
		caps:     Caps(mb.flags()),
		n:        n,
		log:      log,
		drainTO:  d,
		wake:     make(chan struct{}, 1),
		pos:      tail,
		tail:     tail,
		inflight: make(map[uint16]*Cmd),
	}
	r.ooo = r.caps.Has(CapOOOC)
	if unknown := r.caps &^ (CapOOOC | CapReadLen | CapTMR | CapKeepBuf); unknown != 0 {
		log.Debug("tcmu: unknown mailbox flags ignored", "flags", r.caps.String())
	}
	return r, nil
}

// Flags returns the mailbox flags as the kernel set them.
func (r *Ring) Flags() uint16 { return r.flags }

// Caps returns the capabilities the kernel advertises.
func (r *Ring) Caps() Caps { return r.caps }

// Stats returns a snapshot of the ring's counters; safe from any goroutine.
func (r *Ring) Stats() RingStats {
	return RingStats{
		Commands:      r.st.commands.Load(),
		Pads:          r.st.pads.Load(),
		TMRs:          r.st.tmrs.Load(),
		UnknownOps:    r.st.unknown.Load(),
		Completions:   r.st.completions.Load(),
		Batches:       r.st.batches.Load(),
		DirectBatches: r.st.directBatches.Load(),
		DirectPolls:   r.st.directPolls.Load(),
		Kicks:         r.st.kicks.Load(),
		Wakeups:       r.st.wakeups.Load(),
		InFlight:      r.st.inflight.Load(),
	}
}

// Complete records the response of c and sees it written into the ring.
// If c was the last command being served, no one else is writing to the
// ring at that moment and Run is serving, Complete writes the completions
// itself and kicks the kernel (a system call, in which the kernel copies a
// READ's data to the initiator); otherwise it hands c to the ring
// goroutine, which writes it in its next batch. It is safe from any
// goroutine and never waits for a lock. c must not be used afterwards: its
// buffers belong to the kernel again and the Cmd is recycled. Completing a
// Cmd twice is a bug and panics.
func (r *Ring) Complete(c *Cmd, resp Response) {
	if c.ring != r {
		panic("tcmu: Complete: Cmd belongs to another Ring")
	}
	if !c.state.CompareAndSwap(cmdInFlight, cmdCompleted) {
		panic("tcmu: Complete: Cmd completed twice")
	}
	c.status = resp.Status
	c.senseLen = uint8(copy(c.sense[:], resp.Sense))
	c.shortRead = resp.ShortRead
	c.readLen = resp.ReadLen
	for {
		old := r.done.Load()
		c.next = old
		if r.done.CompareAndSwap(old, c) {
			break
		}
	}
	// Pushes that find the ring busy send their own tokens.
	if r.busy.Add(-1) == 0 && r.shortcut(nil) {
		return
	}
	r.wakeRing()
}

// wakeRing sends the ring goroutine a token without blocking; one pending
// token is enough for any number of pushes.
func (r *Ring) wakeRing() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run serves the ring until ctx is done or the ring fails. It first
// processes what is already in the ring (a restarted daemon must serve
// entries queued before it started: the UIO fd only wakes on new events),
// then waits for kernel kicks and completions. When ctx is done or the ring
// failed it stops taking entries, waits up to the drain timeout for the
// commands in flight, writes their responses, kicks the kernel and returns
// after every goroutine it started has exited. It returns nil after a clean
// shutdown, an error wrapping ErrCorruptRing for a broken ring, the
// Notifier's errors, or ErrDrainTimeout. Run may be called once.
//
// Commands still held by workers when Run returns reference mem: do not
// unmap it before they are done.
func (r *Ring) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("tcmu: Run: nil Handler")
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("tcmu: Run called twice")
	}
	// The waiter outlives ctx until serve returned: cancelling it is what
	// stops intake.
	wctx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	kicks := make(chan struct{}, 1)
	waitErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { r.waitLoop(wctx, h, kicks, waitErr) })
	// Deferred, so that the waiter is joined even if a Handler panics.
	defer wg.Wait()
	defer stopWait()

	r.setDirect(true)
	err := r.serve(ctx, h, kicks, waitErr)
	r.setDirect(false)
	stopWait() // stop intake: kernel kicks no longer matter
	return errors.Join(err, r.drain())
}

// tryPoll is the waiter's shortcut: if the ring is idle (no command being
// served), free and served, it takes the new entries and writes the
// completions itself, sparing the ring goroutine a wake-up. It reports
// whether it did; if not, the caller hands the kernel's notification to
// the ring goroutine.
func (r *Ring) tryPoll(h Handler) bool {
	// Only when no command is being served: under load the ring
	// goroutine parses and batches, and the waiter taking the lock as
	// well only adds contention for it.
	if r.busy.Load() != 0 || !r.shortcut(h) {
		return false
	}
	r.st.directPolls.Add(1)
	return true
}

// shortcut is the waiter's and Complete's way into the ring: if it can
// take the lock without waiting and Run serves, it takes the new entries
// (h not nil) and writes the completions on the calling goroutine. An
// error is kept for the ring goroutine, which is woken to return it. It
// reports whether it ran.
func (r *Ring) shortcut(h Handler) bool {
	if !r.mu.TryLock() {
		return false
	}
	if !r.direct || r.asyncErr != nil {
		r.mu.Unlock()
		return false
	}
	var err error
	if h != nil {
		err = r.poll(h)
	}
	if err == nil {
		b := r.st.batches.Load()
		err = r.flush()
		if r.st.batches.Load() != b {
			r.st.directBatches.Add(1)
		}
	}
	r.asyncErr = err
	r.mu.Unlock()
	if err != nil {
		r.wakeRing()
	}
	return true
}

// setDirect turns the waiter's and Complete's shortcuts on or off.
func (r *Ring) setDirect(on bool) {
	r.mu.Lock()
	r.direct = on
	r.mu.Unlock()
}

// pollAndFlush takes new entries, if h is not nil, and writes the
// completions handed over so far, under mu; it also returns the error of
// a flush made by Complete.
func (r *Ring) pollAndFlush(h Handler) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h != nil {
		if err := r.poll(h); err != nil {
			return err
		}
	}
	if err := r.flush(); err != nil {
		return err
	}
	err := r.asyncErr
	r.asyncErr = nil
	return err
}

// inFlight is the number of commands handed to the Handler and not yet
// retired.
func (r *Ring) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.inflight)
}

// waitLoop turns Notifier.Wait returns into tokens on kicks until ctx is
// done; any other Wait error goes to errc and ends the loop.
func (r *Ring) waitLoop(ctx context.Context, h Handler, kicks chan<- struct{}, errc chan<- error) {
	for {
		if err := r.n.Wait(ctx); err != nil {
			if ctx.Err() == nil {
				errc <- fmt.Errorf("tcmu: wait for the kernel: %w", err)
			}
			return
		}
		r.st.wakeups.Add(1)
		if r.tryPoll(h) {
			continue
		}
		select {
		case kicks <- struct{}{}:
		default:
		}
	}
}

// serve is the ring goroutine's main loop; it returns nil when ctx is done.
func (r *Ring) serve(ctx context.Context, h Handler, kicks <-chan struct{}, waitErr <-chan error) error {
	if ctx.Err() != nil {
		return nil
	}
	if err := r.pollAndFlush(h); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-waitErr:
			return err
		case <-kicks:
			if ctx.Err() != nil {
				return nil // select picks at random among ready cases
			}
			if err := r.pollAndFlush(h); err != nil {
				return err
			}
		case <-r.wake:
			if err := r.pollAndFlush(nil); err != nil {
				return err
			}
		}
	}
}

// drain waits up to the drain timeout for every command in flight and
// writes the responses back (or, once writing stopped, recycles them), so
// that workers are done with the mapping when Run returns.
func (r *Ring) drain() error {
	var errs []error
	if err := r.pollAndFlush(nil); err != nil {
		errs = append(errs, err)
	}
	if n := r.inFlight(); n > 0 && r.drainTO < 0 {
		errs = append(errs, fmt.Errorf("tcmu: %w: %d commands in flight", ErrDrainTimeout, n))
		return errors.Join(errs...)
	}
	t := time.NewTimer(r.drainTO)
	defer t.Stop()
	for r.inFlight() > 0 {
		select {
		case <-r.wake:
			// After a first error flush only recycles: keep waiting.
			if err := r.pollAndFlush(nil); err != nil {
				errs = append(errs, err)
			}
		case <-t.C:
			errs = append(errs, fmt.Errorf("tcmu: %w: %d commands in flight after %v",
				ErrDrainTimeout, r.inFlight(), r.drainTO))
			return errors.Join(errs...)
		}
	}
	return errors.Join(errs...)
}

// corrupt builds an error wrapping ErrCorruptRing.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("tcmu: %w: "+format, append([]any{ErrCorruptRing}, args...)...)
}

// poll parses every entry from our position up to cmd_head, as the kernel
// placed them in queue_cmd_ring and queue_tmr_ring.
func (r *Ring) poll(h Handler) error {
	head, err := r.checkShared()
	if err != nil {
		return err
	}
	for r.pos != head {
		off := r.pos
		// Bytes between our position and head, and up to the ring end:
		// an entry never wraps (the kernel inserts a PAD instead).
		avail := (uint64(head) + uint64(r.size) - uint64(off)) % uint64(r.size)
		toEnd := r.size - off // >= 8: both are multiples of 8
		e := entry(r.ring[off:])
		lenOp := e.lenOp()
		n := entryLen(lenOp)
		if n == 0 || n > toEnd || uint64(n) > avail {
			return corrupt("entry at %d: len_op %#x does not fit (%d bytes to the ring end, %d to cmd_head)",
				off, lenOp, toEnd, avail)
		}
		e = e[:n:n]
		switch entryOp(lenOp) {
		case opPad:
			r.slots.push(slot{off: off, len: n})
			r.st.pads.Add(1)
		case opCmd:
			if err := r.takeCmd(e, off, h); err != nil {
				return err
			}
		case opTMR:
			if err := r.takeTMR(e, off, h); err != nil {
				return err
			}
		default:
			// A kernel newer than us: flag it so the kernel knows we
			// did not act on it, and retire it like a PAD.
			e.setUflags(e.uflags() | uflagUnknownOp)
			r.slots.push(slot{off: off, len: n})
			r.st.unknown.Add(1)
			r.log.Debug("tcmu: unknown ring entry flagged", "op", entryOp(lenOp), "offset", off)
		}
		r.pos = uint32((uint64(off) + uint64(n)) % uint64(r.size))
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
func (r *Ring) checkShared() (head uint32, err error) {
	if t := loadCmdTail(r.mem); t != r.tail {
		r.noWrites = true
		return 0, fmt.Errorf("tcmu: %w: cmd_tail is %d, we left it at %d", ErrRingReset, t, r.tail)
	}
	head = loadCmdHead(r.mem)
	if head >= r.size || head%opAlign != 0 {
		r.noWrites = true
		return 0, corrupt("cmd_head %d outside the %d-byte ring or misaligned", head, r.size)
	}
	// The entries we consumed but have not retired are in use: the
	// kernel's head cannot be behind our position (it keeps a byte free to
	// tell a full ring from an empty one).
	if dist(r.tail, head, r.size) < dist(r.tail, r.pos, r.size) {
		if r.tail == 0 {
			r.noWrites = true
			return 0, fmt.Errorf("tcmu: %w: cmd_head %d behind our position %d", ErrRingReset, head, r.pos)
		}
		r.noWrites = true
		return 0, corrupt("cmd_head %d is behind our position %d (cmd_tail %d)", head, r.pos, r.tail)
	}
	return head, nil
}

// takeCmd validates a CMD entry, copies it into a Cmd and hands it to h.
func (r *Ring) takeCmd(e entry, off uint32, h Handler) error {
	if len(e) < entSize {
		return corrupt("CMD entry at %d: %d bytes, smaller than tcmu_cmd_entry (%d)", off, len(e), entSize)
	}
	nData, nBidi, nDIF := uint64(e.iovCnt()), uint64(e.iovBidiCnt()), uint64(e.iovDifCnt())
	nIov := nData + nBidi + nDIF
	if reqIov+nIov*iovSize > uint64(len(e)) {
		return corrupt("CMD entry at %d: %d+%d+%d iovecs overflow its %d bytes", off, nData, nBidi, nDIF, len(e))
	}
	cdb, err := r.cdb(e.cdbOff())
	if err != nil {
		return fmt.Errorf("%w (CMD entry at %d)", err, off)
	}
	id := e.cmdID()
	if _, dup := r.inflight[id]; dup {
		return corrupt("CMD entry at %d: cmd_id %d already in flight", off, id)
	}
	c := r.newCmd()
	memLen := uint64(len(r.mem))
	for i := range int(nIov) {
		base, n := e.iov(i)
		if base < r.dataOff || base > memLen || n > memLen-base {
			r.free = append(r.free, c)
			c.reset()
			return corrupt("CMD entry at %d: iovec %d [%#x +%#x] outside the data area [%#x, %#x)",
				off, i, base, n, r.dataOff, memLen)
		}
		c.iovs = append(c.iovs, r.mem[base:base+n:base+n])
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
	c.ring = r
	c.state.Store(cmdInFlight)
	r.inflight[id] = c
	s := slot{off: off, len: uint32(len(e)), isCmd: true}
	if !r.ooo {
		s.cmd = c
	}
	r.slots.push(s)
	r.st.commands.Add(1)
	r.st.inflight.Add(1)
	r.busy.Add(1)
	h.Handle(c)
	return nil
}

// cdb returns the CDB at mapping offset o, which must lie in the command
// ring, with the length the kernel copied (scsi_command_size).
func (r *Ring) cdb(o uint64) ([]byte, error) {
	end := r.cmdrOff + uint64(r.size)
	if o < r.cmdrOff || o >= end {
		return nil, corrupt("cdb_off %#x outside the command ring [%#x, %#x)", o, r.cmdrOff, end)
	}
	n := uint64(cdbGroupLen[r.mem[o]>>5])
	if r.mem[o] == variableLengthCDB {
		if o+8 > end {
			return nil, corrupt("variable-length CDB at %#x crosses the ring end", o)
		}
		n = 8 + uint64(r.mem[o+7])
	}
	if o+n > end {
		return nil, corrupt("%d-byte CDB at %#x crosses the ring end", n, o)
	}
	return r.mem[o : o+n], nil
}

// takeTMR marks the commands a TMR entry names as aborted and tells h.
func (r *Ring) takeTMR(e entry, off uint32, h Handler) error {
	if len(e) < tmrEntSize {
		return corrupt("TMR entry at %d: %d bytes, smaller than tcmu_tmr_entry (%d)", off, len(e), tmrEntSize)
	}
	n := uint64(e.tmrCmdCnt())
	if tmrCmdIDs+2*n > uint64(len(e)) {
		return corrupt("TMR entry at %d: %d cmd_ids overflow its %d bytes", off, n, len(e))
	}
	kind := TMRType(e.tmrType())
	r.tmrCmds = r.tmrCmds[:0]
	for i := range int(n) {
		c, ok := r.inflight[e.tmrCmdID(i)]
		if ok && !c.aborted.Load() {
			c.aborted.Store(true)
			r.tmrCmds = append(r.tmrCmds, c)
		}
	}
	r.slots.push(slot{off: off, len: uint32(len(e))})
	r.st.tmrs.Add(1)
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("tcmu: TMR", "op", kind.String(), "cmd_ids", n, "aborted", len(r.tmrCmds))
	}
	h.TMR(kind, r.tmrCmds)
	clear(r.tmrCmds)
	return nil
}

// newCmd takes a Cmd from the free list or allocates one.
func (r *Ring) newCmd() *Cmd {
	if n := len(r.free); n > 0 {
		c := r.free[n-1]
		r.free[n-1] = nil
		r.free = r.free[:n-1]
		return c
	}
	return &Cmd{}
}

// flush takes every completion handed over so far, writes responses into
// the slots at the tail, retires PAD, TMR and unknown entries there, and
// then publishes cmd_tail and kicks the kernel once.
func (r *Ring) flush() error {
	// The stack holds the newest completion first; reverse it so that
	// responses go out in completion order.
	var list *Cmd
	for c := r.done.Swap(nil); c != nil; {
		next := c.next
		c.next = list
		list = c
		c = next
	}
	for c := list; c != nil; {
		next := c.next
		c.next = nil
		c.ready = true
		r.pending = append(r.pending, c)
		c = next
	}
	defer func() {
		clear(r.pending)
		r.pending = r.pending[:0]
	}()
	if !r.noWrites && r.slots.len() > 0 {
		if _, err := r.checkShared(); err != nil {
			r.discard()
			return err
		}
	}
	if r.noWrites {
		r.discard()
		return nil
	}

	moved := false
	taken := 0
	for r.slots.len() > 0 {
		s := r.slots.front()
		if s.isCmd {
			var c *Cmd
			if r.ooo {
				if taken == len(r.pending) {
					break
				}
				c = r.pending[taken]
				taken++
			} else {
				if !s.cmd.ready {
					break
				}
				c = s.cmd
			}
			r.writeResponse(s.off, c)
			r.release(c)
		}
		r.tail = uint32((uint64(r.tail) + uint64(s.len)) % uint64(r.size))
		r.slots.pop()
		moved = true
	}
	if r.ooo && taken != len(r.pending) {
		// Every command in flight owns one CMD slot, so this cannot happen.
		panic("tcmu: more completions than command slots")
	}
	if !moved {
		return nil
	}
	storeCmdTail(r.mem, r.tail)
	r.st.batches.Add(1)
	if err := r.n.Kick(); err != nil {
		r.noWrites = true
		return fmt.Errorf("tcmu: kick the kernel: %w", err)
	}
	r.st.kicks.Add(1)
	return nil
}

// discard recycles completed commands without writing anything: after a
// ring reset the kernel no longer knows them. r.pending holds the batch
// just taken; in-order mode may also hold ready commands waiting in their
// slots for an older one.
func (r *Ring) discard() {
	for r.slots.len() > 0 {
		if c := r.slots.front().cmd; c != nil && c.ready && c.state.Load() == cmdCompleted {
			r.release(c)
		}
		r.slots.pop()
	}
	for _, c := range r.pending {
		if c.state.Load() == cmdCompleted { // not released just above
			r.release(c)
		}
	}
}

// writeResponse writes the response of c into the CMD slot at off (which
// may have carried another command: out-of-order completion), as
// tcmu_handle_completion reads it.
func (r *Ring) writeResponse(off uint32, c *Cmd) {
	e := entry(r.ring[off : off+entSize])
	e.setCmdID(c.ID)
	var uflags uint8
	var readLen uint32
	if c.shortRead && r.caps.Has(CapReadLen) {
		uflags |= uflagReadLen
		readLen = c.readLen
	}
	e.setUflags(uflags)
	e.setStatus(c.status)
	e.setReadLen(readLen)
	sb := e.sense()
	n := copy(sb, c.sense[:c.senseLen])
	clear(sb[n:])
	r.st.completions.Add(1)
}

// release retires a completed command and recycles it.
func (r *Ring) release(c *Cmd) {
	delete(r.inflight, c.ID)
	r.st.inflight.Add(^uint64(0))
	c.reset()
	r.free = append(r.free, c)
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
