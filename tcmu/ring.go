// SPDX-License-Identifier: Apache-2.0

package tcmu

// This file is Ring: its options, statistics, lock, Run and Complete.
// The codec it drives is in codec.go; the executors that wait for the
// kernel and run commands, and their watchdog, are in executor.go.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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

// Handler receives the commands and TMR notifications of a Ring.
//
// Handle is called on one of the Ring's executors (see Ring), without the
// ring's lock, and executes c: it may block. Exactly one Ring.Complete(c,
// ...) must follow, normally from Handle itself, or from any goroutine
// Handle hands c to. Before a Handle call waits on anything but memory
// (a file system that may be slow, a device, the network) it should call
// Ring.WillBlock(c), so that another executor takes over waiting for the
// kernel and runs the other commands meanwhile.
//
// TMR is called with the ring locked, one call at a time, after the
// commands it names that are still in flight were marked Aborted; it must
// not block. aborted is only valid during the call. It may be a no-op:
// aborted commands must still be completed.
type Handler interface {
	Handle(c *Cmd)
	TMR(kind TMRType, aborted []*Cmd)
}

// ExecutorLimiter is implemented by a Handler that sets the Ring's
// executor bound itself (RingOptions.Executors) when Run starts: for
// example from how many commands it lets block at once.
type ExecutorLimiter interface {
	MaxExecutors() int
}

// RingOptions configure a Ring.
type RingOptions struct {
	// Logger receives debug logs (TMRs, unknown entries); nil discards.
	Logger *slog.Logger
	// DrainTimeout is how long Run waits for in-flight commands after its
	// context is done or the ring failed: 0 means DefaultDrainTimeout, a
	// negative value not to wait.
	DrainTimeout time.Duration
	// InlineBound is how long an executor may run one command that its
	// Handler did not announce with WillBlock before the watchdog treats
	// it as blocked and has another executor wait for the kernel: 0
	// means DefaultInlineBound.
	InlineBound time.Duration
	// Executors bounds the goroutines that execute commands (Handle) at
	// once, blocked ones included (at least 2: one of them is never
	// blocked, see WillBlock): 0 means DefaultExecutors.
	Executors int
	// Parallel bounds the executors running commands that have not
	// called WillBlock (commands served from memory): more than there
	// are CPUs only adds switching. 0 means runtime.GOMAXPROCS(0).
	Parallel int
}

// DefaultExecutors is used when RingOptions.Executors is zero.
const DefaultExecutors = 8

// RingStats counts what a Ring did since NewRing.
type RingStats struct {
	Commands    uint64 // CMD entries handed to the Handler
	Pads        uint64 // PAD entries skipped
	TMRs        uint64 // TMR entries seen
	UnknownOps  uint64 // entries with an unknown opcode (flagged TCMU_UFLAG_UNKNOWN_OP)
	Completions uint64 // responses written into the ring
	Batches     uint64 // cmd_tail stores (each followed by one kick)
	// Inline are the commands run by the executor that took them from
	// the ring itself, with no other executor woken for them.
	Inline uint64
	// Handoffs are the times an executor woke another (parked or new)
	// one: for commands left in the queue, or to wait for the kernel
	// while it blocks (WillBlock).
	Handoffs uint64
	// Handovers are the times the watchdog found a command running past
	// InlineBound with nobody waiting for the kernel, and had another
	// executor take over the waiting.
	Handovers uint64
	// Executors are the executor goroutines alive now.
	Executors uint64
	Kicks     uint64 // successful Notifier.Kick calls
	Wakeups   uint64 // kernel notifications received (Notifier.Wait returns)
	InFlight  uint64 // commands taken from the ring and not yet written back
}

// ringCounters back RingStats; the codec and the scheduler update them.
type ringCounters struct {
	commands, pads, tmrs, unknown, completions atomic.Uint64
	batches, kicks, wakeups, inflight          atomic.Uint64
	inline, handoffs, handovers, executors     atomic.Uint64
}

// Ring serves the command ring of one TCMU device. It has two layers.
//
// The codec (type codec, codec.go) speaks the ring ABI: it parses entries
// from cmd_head, writes responses into slots and stores cmd_tail. It is
// single-threaded code with no goroutines and no scheduling; it is not
// safe for concurrent use. Ring.mu guards it: whoever holds mu runs it.
//
// The scheduler (Ring, executor.go) runs everything on executors: a small
// elastic set of goroutines, each of which, in a loop, takes a command and
// executes it (Handler.Handle) on its own goroutine, then completes it
// (Complete writes the response, stores cmd_tail and kicks the kernel
// itself unless another executor holds mu: then that one writes it before
// it lets go). An executor takes a command from the queue of parsed
// commands; if the queue is empty it parses the ring (entries the kernel
// queued meanwhile need no signal); if there is still nothing, one
// executor waits for the kernel's signal (Notifier.Wait) and the others
// park. So a command runs on the goroutine that took it from the ring,
// with no hand-off, and completes there: the shape of a C handler's
// thread that reads, executes and completes. An executor wakes another
// only when commands are left in the queue while fewer than Parallel run
// (or any run blocked: WillBlock), or when it is about to block with
// nobody waiting for the kernel; a watchdog (executor.go) treats a command
// that runs past InlineBound without WillBlock as blocked. So TMRs and
// new commands keep flowing while commands block, as long as fewer than
// Executors are blocked.
//
// While holding mu nothing blocks: the kick, in which the kernel copies a
// READ's data to the initiator, is made after mu is released.
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
	maxExecs    int
	parallel    int

	running atomic.Bool

	// done is a lock-free stack of completed commands (linked through
	// Cmd.next), pushed by Complete and taken whole by retire.
	done atomic.Pointer[Cmd]
	// wake has room for one token: Complete sends one when it could not
	// write its completion itself while Run drains.
	wake chan struct{}
	// kicks counts the kick requests since the kick in progress started
	// (kick); 0: no kick in progress.
	kicks atomic.Int32

	st ringCounters

	// mu guards the fields below and the codec; see Ring. Holding it
	// never blocks.
	mu sync.Mutex
	// h receives the commands parse takes (set by Run, or by tests that
	// drive poll by hand).
	h Handler
	// sched is the executors' state (executor.go).
	sched sched
	// direct is set while Run serves: Complete writes completions
	// itself. Once Run has drained, nothing writes into the ring.
	direct bool
	// asyncErr is the first error of a parse, flush or kick made by an
	// executor, for Run to return.
	asyncErr error
	// codec speaks the ring ABI (codec.go): it parses entries, writes
	// responses and stores cmd_tail. It is single-threaded and not safe
	// for concurrent use. Ring owns it, and only the goroutine holding
	// mu calls it. Before Run, and in tests that drive poll and flush by
	// hand, the Ring's only user may call it without mu. Protected by
	// mu, except mem, flags and caps, which NewRing sets and nothing
	// changes.
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
	if opts.Executors < 0 || opts.Executors == 1 || opts.Parallel < 0 {
		return nil, fmt.Errorf("tcmu: NewRing: executors %d (want 0 or at least 2) or parallel %d (want 0 or more)", opts.Executors, opts.Parallel)
	}
	ex := opts.Executors
	if ex == 0 {
		ex = DefaultExecutors
	}
	par := opts.Parallel
	if par == 0 {
		par = runtime.GOMAXPROCS(0)
	}
	r := &Ring{
		n:           n,
		log:         log,
		drainTO:     d,
		inlineBound: ib,
		maxExecs:    ex,
		parallel:    min(par, ex),
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
		Commands:    r.st.commands.Load(),
		Pads:        r.st.pads.Load(),
		TMRs:        r.st.tmrs.Load(),
		UnknownOps:  r.st.unknown.Load(),
		Completions: r.st.completions.Load(),
		Batches:     r.st.batches.Load(),
		Inline:      r.st.inline.Load(),
		Handoffs:    r.st.handoffs.Load(),
		Handovers:   r.st.handovers.Load(),
		Executors:   r.st.executors.Load(),
		Kicks:       r.st.kicks.Load(),
		Wakeups:     r.st.wakeups.Load(),
		InFlight:    r.st.inflight.Load(),
	}
}

// Complete records the response of c and sees it written into the ring:
// if no other goroutine holds the ring's lock it writes the completions
// itself and kicks the kernel (a system call, in which the kernel copies a
// READ's data to the initiator); otherwise the holder writes it before it
// lets go. It is safe from any goroutine and never waits for a lock. c
// must not be used afterwards: its buffers belong to the kernel again and
// the Cmd is recycled. Completing a Cmd twice is a bug and panics.
func (r *Ring) Complete(c *Cmd, resp Response) {
	if c.ring != r {
		panic("tcmu: Complete: Cmd belongs to another Ring")
	}
	if !c.state.CompareAndSwap(cmdInFlight, cmdCompleted) {
		panic("tcmu: Complete: Cmd completed twice")
	}
	c.ex = nil
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
	if !r.mu.TryLock() {
		// The holder sees the push when it unlocks (unlock).
		return
	}
	r.unlock()
}

// unlock releases mu after writing the completions pushed so far, and
// kicks the kernel if cmd_tail moved. A Complete that found mu held left
// its completion on the stack for the holder: after releasing mu, unlock
// looks again and, if something was pushed and mu is free, writes it too.
// (A push that failed its TryLock came before this Unlock, so the Load
// after it sees the push: sync/atomic is sequentially consistent.)
//
// Preconditions: mu is held.
func (r *Ring) unlock() {
	for {
		kick, direct := false, r.direct
		if direct {
			var err error
			kick, err = r.retire()
			r.setErr(err)
		}
		r.mu.Unlock()
		if kick {
			r.kick()
		}
		if !direct || r.done.Load() == nil || !r.mu.TryLock() {
			return
		}
	}
}

// kick tells the kernel that cmd_tail moved, merging kicks asked for
// while one is in progress: the goroutine whose request finds no kick in
// progress kicks, and kicks again for as long as requests arrived during
// its last kick; any other returns at once. Each tail store comes before
// its request, and a request counted during a kick is served by a later
// kick, so no completion waits for a kick that is not coming. The
// kernel's kick (tcmu_irqcontrol) walks every completion posted so far,
// so one kick serves all the requests merged into it.
//
// Preconditions: mu is not held.
func (r *Ring) kick() {
	if r.kicks.Add(1) != 1 {
		return
	}
	for {
		if err := r.codec.kick(); err != nil {
			r.mu.Lock()
			r.codec.noWrites = true
			r.setErr(err)
			r.mu.Unlock()
		}
		if r.kicks.CompareAndSwap(1, 0) {
			return
		}
		// Requests came during the kick: one more kick serves them all.
		r.kicks.Store(1)
	}
}

// setErr keeps the first asynchronous error for Run and stops the
// executors' intake.
//
// Preconditions: mu is held.
func (r *Ring) setErr(err error) {
	if err == nil || r.asyncErr != nil {
		return
	}
	r.asyncErr = err
	r.stopLocked()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run serves the ring until ctx is done or the ring fails. It first
// processes what is already in the ring (a restarted daemon must serve
// entries queued before it started: the UIO fd only wakes on new events),
// then its executors wait for kernel signals and execute commands. When
// ctx is done or the ring failed it stops taking entries, lets the
// executors finish the commands already taken, waits up to the drain
// timeout for the commands in flight, writes their responses and returns.
// Executors stuck in Handle past the drain timeout are left behind; Done
// says when the last executor has returned. It returns nil after a clean
// shutdown, an error wrapping ErrCorruptRing for a broken ring, the
// Notifier's errors, or ErrDrainTimeout. Run may be called once.
//
// Commands still held by executors when Run returns reference mem: do not
// unmap it before Done is closed.
func (r *Ring) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("tcmu: Run: nil Handler")
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("tcmu: Run called twice")
	}
	if ctx.Err() != nil {
		return nil // cancelled before it started: take nothing
	}
	// The executors' waits outlive ctx until Run stops them: cancelling
	// wctx is what stops intake.
	wctx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	if l, ok := h.(ExecutorLimiter); ok && l.MaxExecutors() > 0 {
		r.maxExecs = max(l.MaxExecutors(), 2)
		r.parallel = min(r.parallel, r.maxExecs)
	}
	r.mu.Lock()
	r.h = h
	r.direct = true
	r.sched.init(r, wctx)
	// What a previous owner left in the ring is served at once.
	r.setErr(r.parse())
	if !r.sched.stopping || r.sched.queue.len() > 0 {
		// The first executor: it runs or waits (or, after a parse
		// error, runs what the parse took).
		r.sched.spawn(r)
	}
	r.unlock()
	var wdg sync.WaitGroup
	wdg.Go(func() { r.watchdog(wctx) })
	defer wdg.Wait()

	select {
	case <-ctx.Done():
	case <-r.sched.failed:
	}
	r.mu.Lock()
	r.stopLocked()
	r.mu.Unlock()
	stopWait()
	<-r.sched.waitDone // nobody waits for the kernel any more
	derr := r.drain()
	r.mu.Lock()
	r.direct = false
	err := r.asyncErr
	r.mu.Unlock()
	return errors.Join(err, derr)
}

// Done is closed when every executor has returned after Run stopped: then
// no Handle call is in progress any more. Before Run it is nil.
func (r *Ring) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sched.exited
}

// flushDone writes the completions pushed so far (unlock does it); errors
// are kept for Run (asyncErr).
func (r *Ring) flushDone() {
	r.mu.Lock()
	r.unlock()
}

// poll parses the new entries for h. Tests drive a Ring by hand with poll
// and flush.
//
// Preconditions: the Ring does not run.
func (r *Ring) poll(h Handler) error {
	r.h = h
	return r.parse()
}

// flush writes the completions handed over so far and kicks the kernel.
//
// Preconditions: the Ring does not run.
func (r *Ring) flush() error {
	kick, err := r.retire()
	if err != nil || !kick {
		return err
	}
	if err := r.codec.kick(); err != nil {
		r.codec.noWrites = true
		return err
	}
	return nil
}

// parse runs the codec's parse with r as its sink.
//
// Preconditions: mu is held.
func (r *Ring) parse() error { return r.codec.parse() }

// retire hands the completions pushed so far to the codec, which writes
// them; it reports whether the kernel must be kicked.
//
// Preconditions: mu is held.
func (r *Ring) retire() (kick bool, err error) {
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

// takeCmd is the codec's sink for a parsed command: it marks c in flight
// and queues it for an executor (or, when the Ring does not run, gives it
// to the Handler at once: tests that drive poll by hand).
//
// Preconditions: mu is held.
func (r *Ring) takeCmd(c *Cmd) {
	c.ring = r
	c.state.Store(cmdInFlight)
	if !r.running.Load() {
		r.h.Handle(c)
		return
	}
	r.sched.queue.push(c)
}

// takeTMR is the codec's sink for a TMR entry.
//
// Preconditions: mu is held.
func (r *Ring) takeTMR(kind TMRType, aborted []*Cmd) { r.h.TMR(kind, aborted) }

// inFlight is the number of commands taken from the ring and not yet
// retired.
func (r *Ring) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.codec.inflight)
}

// drain waits up to the drain timeout for every command in flight and
// writes the responses back (or, once writing stopped, recycles them), so
// that the executors are done with the mapping when Run returns. It
// returns only ErrDrainTimeout; other errors are kept for Run (asyncErr).
func (r *Ring) drain() error {
	r.flushDone()
	if n := r.inFlight(); n > 0 && r.drainTO < 0 {
		return fmt.Errorf("tcmu: %w: %d commands in flight", ErrDrainTimeout, n)
	}
	t := time.NewTimer(r.drainTO)
	defer t.Stop()
	// Complete writes its own completion when mu is free, or leaves it
	// to the holder, who writes it before letting go; the wake token
	// and the tick only bound how long this loop sleeps between looks.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.inFlight() > 0 {
		select {
		case <-r.wake:
		case <-tick.C:
		case <-t.C:
			return fmt.Errorf("tcmu: %w: %d commands in flight after %v",
				ErrDrainTimeout, r.inFlight(), r.drainTO)
		}
		r.flushDone()
	}
	return nil
}
