// SPDX-License-Identifier: Apache-2.0

package tcmu

// This file is the scheduler: Ring, who holds its lock when, and what
// runs inline or on workers. The codec it drives is in codec.go, the UIO
// waiter and its watchdog in waiter.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

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

// Handler receives the commands and TMR notifications of a Ring. Handle
// and TMR are called with the ring locked (see Ring), one call at a time,
// and must not block.
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
	// InlineBound is how long a batch of inline commands (Inliner) may
	// run before a fresh goroutine takes over the UIO waiter's role: 0
	// means DefaultInlineBound.
	InlineBound time.Duration
	// Waiter is how the UIO waiter waits for the kernel (experimental,
	// see WaiterMode); the zero value is WaiterNetpoll.
	Waiter WaiterMode
	// Spin is how long the UIO waiter, after a poll that took entries,
	// watches cmd_head in a loop without system calls before it waits
	// again (experimental): entries the kernel queues meanwhile are
	// served without a sleep and wake-up. It burns a CPU for up to that
	// long after each such poll; 0 turns it off, negative is an error.
	Spin time.Duration
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
	// Inline are the commands executed by the UIO waiter (Inliner).
	Inline uint64
	// Handovers are the times an inline batch ran past InlineBound and a
	// fresh goroutine took over the UIO waiter's role.
	Handovers uint64
	// SpinHits are the times the UIO waiter, spinning on cmd_head
	// (RingOptions.Spin), saw new entries and served them without
	// waiting.
	SpinHits uint64
	Kicks    uint64 // successful Notifier.Kick calls
	Wakeups  uint64 // kernel notifications received (Notifier.Wait returns)
	InFlight uint64 // commands handed out and not yet written back
}

// ringCounters back RingStats; the codec and the scheduler update them.
type ringCounters struct {
	commands, pads, tmrs, unknown, completions atomic.Uint64
	batches, kicks, wakeups, inflight          atomic.Uint64
	directBatches, directPolls                 atomic.Uint64
	inline, handovers, spinHits                atomic.Uint64
}

// Ring serves the command ring of one TCMU device. It has two layers.
//
// The codec (type codec, codec.go) speaks the ring ABI: it parses entries
// from cmd_head, writes responses into slots, stores cmd_tail and kicks.
// It is single-threaded code with no goroutines and no scheduling; it is
// not safe for concurrent use. Ring.mu guards it: whoever holds mu runs
// it.
//
// The scheduler (Ring) decides who holds mu and what runs where. Run
// starts two goroutines; these are the only goroutines that take mu:
//
//   - the UIO waiter, the one goroutine in Notifier.Wait. After a kernel
//     signal, when no command is being served (busy is 0) and mu is free,
//     it parses the new entries and writes completions itself; commands
//     an Inliner accepts it then executes itself, unlocked, under a
//     watchdog (RingOptions.InlineBound). Otherwise it wakes the ring
//     goroutine.
//   - the ring goroutine (Run's caller): it parses on the waiter's
//     signal, writes completions workers handed over, drains on shutdown.
//   - a goroutine in Complete, with TryLock only: when it completes the
//     last command being served and mu is free, it writes the completions
//     and kicks the kernel itself; otherwise it leaves them to the ring
//     goroutine. It never waits for mu.
//
// While holding mu nothing blocks but the kick (a system call that does
// not sleep on I/O): Handler.Handle, Inliner.Inline and Handler.TMR must
// not block, inline commands run after mu is released. On an idle ring
// the waiter and Complete spare the ring goroutine's wake-ups: the QD1
// case; under load the ring goroutine batches.
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
	n           Notifier
	log         *slog.Logger
	drainTO     time.Duration
	inlineBound time.Duration
	waiter      WaiterMode
	spin        time.Duration

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

	st ringCounters

	// mu guards the fields below and the codec; see Ring for who takes
	// it. Holding it never blocks on anything but the kick.
	mu sync.Mutex
	// h receives the commands parse takes (set by Run, or by tests that
	// drive poll by hand).
	h Handler
	// inl is h as an Inliner while the UIO waiter parses, else nil:
	// only the waiter runs commands inline.
	inl Inliner
	// batch collects the commands inl accepted during one parse.
	batch []*Cmd
	// direct is set while the ring goroutine serves; drain and after
	// leave every flush to the ring goroutine, so that nothing writes
	// into the ring once Run returned.
	direct bool
	// asyncErr is the error of a poll or flush made by the UIO waiter or
	// by Complete, for the ring goroutine to return.
	asyncErr error
	// codec speaks the ring ABI (codec.go): it parses entries, writes
	// responses, stores cmd_tail and kicks. It is single-threaded and not
	// safe for concurrent use. Ring owns it, and only the goroutine holding
	// mu calls it: the UIO waiter (tryPoll), a goroutine completing the
	// last command being served (shortcut) or the ring goroutine
	// (pollAndFlush). Before Run, and in tests that drive poll and flush
	// by hand, the Ring's only user may call it without mu. Protected by
	// mu, except mem, flags and caps, which NewRing sets and nothing
	// changes: the waiter's spin reads cmd_head in mem without mu.
	codec codec
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
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := opts.DrainTimeout
	if d == 0 {
		d = DefaultDrainTimeout
	}
	ib := opts.InlineBound
	if ib <= 0 {
		ib = DefaultInlineBound
	}
	if opts.Waiter >= WaiterMode(len(waiterNames)) {
		return nil, fmt.Errorf("tcmu: NewRing: unknown %v", opts.Waiter)
	}
	if opts.Spin < 0 {
		return nil, fmt.Errorf("tcmu: NewRing: negative spin %v", opts.Spin)
	}
	r := &Ring{
		n:           n,
		log:         log,
		drainTO:     d,
		inlineBound: ib,
		waiter:      opts.Waiter,
		spin:        opts.Spin,
		wake:        make(chan struct{}, 1),
	}
	if err := r.codec.init(mem, n, log, &r.st, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Flags returns the mailbox flags as the kernel set them.
func (r *Ring) Flags() uint16 { return r.codec.flags }

// Caps returns the capabilities the kernel advertises.
func (r *Ring) Caps() Caps { return r.codec.caps }

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
		Inline:        r.st.inline.Load(),
		Handovers:     r.st.handovers.Load(),
		SpinHits:      r.st.spinHits.Load(),
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
	if r.busy.Add(-1) == 0 && r.shortcut() {
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
// after every goroutine it started has exited, except a UIO waiter that
// was relieved of its role while stuck in Inliner.RunInline: that one
// holds a command in flight, like a worker, and exits when it completes.
// It returns nil after a clean shutdown, an error wrapping ErrCorruptRing
// for a broken ring, the Notifier's errors, or ErrDrainTimeout. Run may
// be called once.
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
	r.mu.Lock()
	r.h = h
	r.mu.Unlock()
	// The waiter outlives ctx until serve returned: cancelling it is what
	// stops intake.
	wctx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	w := &waiters{
		ctx:    wctx,
		kicks:  make(chan struct{}, 1),
		errc:   make(chan error, 1),
		wdWake: make(chan struct{}, 1),
	}
	w.inl, _ = h.(Inliner)
	if tw, ok := r.n.(threadWaiter); ok && r.waiter == WaiterBlocking {
		// After every waiter's role ended (the deferred w.wg.Wait): a
		// relieved waiter never waits again.
		defer tw.releaseWait()
	}
	w.start(r, nil)
	// Deferred, so that the waiter is joined even if a Handler panics.
	defer w.wg.Wait()
	var wdg sync.WaitGroup
	if w.inl != nil {
		wdg.Go(func() { r.watchdog(w) })
	}
	defer wdg.Wait()
	defer stopWait()

	r.setDirect(true)
	err := r.serve(ctx, w.kicks, w.errc)
	r.setDirect(false)
	stopWait() // stop intake: kernel kicks no longer matter
	return errors.Join(err, r.drain())
}

// requeue hands the commands of a relieved waiter's batch that it had not
// started to the Handler, under mu.
func (r *Ring) requeue(b *inlineBatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		i := int(b.next.Add(1)) - 1
		if i >= len(b.cmds) {
			return
		}
		r.h.Handle(b.cmds[i])
	}
}

// tryPoll is the waiter's shortcut: if the ring is idle (no command being
// served), free and served, it takes the new entries and writes the
// completions itself, sparing the ring goroutine a wake-up. The commands
// inl accepts are appended to batch, for the caller to run unlocked. It
// reports whether it ran and, if so, whether it took any entry and the
// parse position after them (for spinOnHead); if it did not run, the
// caller hands the kernel's notification to the ring goroutine.
// An error is kept for the ring goroutine, which is woken to return it.
func (r *Ring) tryPoll(inl Inliner, batch *[]*Cmd) (pos uint32, took, ran bool) {
	// Only when no command is being served: under load the ring
	// goroutine parses and batches, and the waiter taking the lock as
	// well only adds contention for it.
	if r.busy.Load() != 0 || !r.mu.TryLock() {
		return 0, false, false
	}
	if !r.direct || r.asyncErr != nil {
		r.mu.Unlock()
		return 0, false, false
	}
	r.inl, r.batch = inl, (*batch)[:0]
	from := r.codec.pos
	err := r.parse()
	*batch, r.inl, r.batch = r.batch, nil, nil
	if err == nil {
		err = r.retireDirect()
	}
	r.asyncErr = err
	pos, took = r.codec.pos, err == nil && r.codec.pos != from
	r.mu.Unlock()
	if err != nil {
		r.wakeRing()
	}
	return pos, took, true
}

// shortcut is Complete's way into the ring: if it can take the lock
// without waiting and Run serves, it writes the completions on the
// calling goroutine. An error is kept for the ring goroutine, which is
// woken to return it. It reports whether it ran.
func (r *Ring) shortcut() bool {
	if !r.mu.TryLock() {
		return false
	}
	if !r.direct || r.asyncErr != nil {
		r.mu.Unlock()
		return false
	}
	err := r.retireDirect()
	r.asyncErr = err
	r.mu.Unlock()
	if err != nil {
		r.wakeRing()
	}
	return true
}

// retireDirect is retire for the waiter and Complete, counted in
// DirectBatches.
//
// Preconditions: mu is held.
func (r *Ring) retireDirect() error {
	b := r.st.batches.Load()
	err := r.retire()
	if r.st.batches.Load() != b {
		r.st.directBatches.Add(1)
	}
	return err
}

// setDirect turns the waiter's and Complete's shortcuts on or off.
func (r *Ring) setDirect(on bool) {
	r.mu.Lock()
	r.direct = on
	r.mu.Unlock()
}

// pollAndFlush takes new entries, if parse, and writes the completions
// handed over so far, under mu; it also returns the error of a flush
// made by Complete.
func (r *Ring) pollAndFlush(parse bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if parse {
		if err := r.parse(); err != nil {
			return err
		}
	}
	if err := r.retire(); err != nil {
		return err
	}
	err := r.asyncErr
	r.asyncErr = nil
	return err
}

// poll parses the new entries for h. The Run goroutines use parse; tests
// drive a Ring by hand with poll and flush.
//
// Preconditions: mu is held, or the Ring does not run.
func (r *Ring) poll(h Handler) error {
	r.h = h
	return r.parse()
}

// flush writes the completions handed over so far.
//
// Preconditions: mu is held, or the Ring does not run.
func (r *Ring) flush() error { return r.retire() }

// parse runs the codec's parse with r as its sink.
//
// Preconditions: mu is held.
func (r *Ring) parse() error { return r.codec.parse() }

// retire hands the completions pushed so far to the codec, which writes
// them.
//
// Preconditions: mu is held.
func (r *Ring) retire() error {
	// The stack holds the newest completion first; reverse it so that
	// responses go out in completion order.
	var list *Cmd
	for c := r.done.Swap(nil); c != nil; {
		next := c.next
		c.next = list
		list = c
		c = next
	}
	return r.codec.flush(list)
}

// maxInlinePerPoll bounds the commands one poll of the waiter runs
// inline: the others of the poll go to the workers, which run them in
// parallel (a run that ran whole polls inline, BENCHMARKS.md, measured
// 4 KiB random writes at QD32 at 0.54x on 2 vCPUs).
const maxInlinePerPoll = 1

// takeCmd is the codec's sink for a parsed command: it marks c in flight
// and gives it to the Handler, or keeps it for the waiter to run inline.
//
// Preconditions: mu is held.
func (r *Ring) takeCmd(c *Cmd) {
	c.ring = r
	c.state.Store(cmdInFlight)
	r.busy.Add(1)
	if r.inl != nil && len(r.batch) < maxInlinePerPoll && r.inl.Inline(c) {
		r.batch = append(r.batch, c)
		return
	}
	r.h.Handle(c)
}

// takeTMR is the codec's sink for a TMR entry.
//
// Preconditions: mu is held.
func (r *Ring) takeTMR(kind TMRType, aborted []*Cmd) { r.h.TMR(kind, aborted) }

// inFlight is the number of commands handed to the Handler and not yet
// retired.
func (r *Ring) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.codec.inflight)
}

// serve is the ring goroutine's main loop; it returns nil when ctx is done.
func (r *Ring) serve(ctx context.Context, kicks <-chan struct{}, waitErr <-chan error) error {
	if ctx.Err() != nil {
		return nil
	}
	if err := r.pollAndFlush(true); err != nil {
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
			if err := r.pollAndFlush(true); err != nil {
				return err
			}
		case <-r.wake:
			if err := r.pollAndFlush(false); err != nil {
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
	if err := r.pollAndFlush(false); err != nil {
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
			if err := r.pollAndFlush(false); err != nil {
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
