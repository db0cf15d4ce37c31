package tcmu

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

// Inliner is implemented by a Handler that can execute some commands on
// the goroutine that took them from the ring, sparing the hand-off to a
// worker and back (two goroutine wake-ups per command).
//
// When the UIO waiter takes new entries itself (the ring is idle), it asks
// Inline about the first command, with the ring locked, before calling
// Handle; Inline must not block and reports whether c may run inline. If
// not, Handle follows, as for every other command of the poll: those run
// on workers, in parallel with the inline one (maxInlinePerPoll). The
// waiter then unlocks the ring and calls RunInline, which executes the
// command and completes it; when nothing else is being served, its
// completion goes out at once, with one cmd_tail store and one kick.
// RunInline may instead hand the command on (to its workers, when it
// finds it would block): the command stays in flight until its Complete,
// from any goroutine, as after Handle.
//
// RunInline should not block, but may: if it runs longer than
// RingOptions.InlineBound (checked every bound by a watchdog goroutine
// that ticks only while inline commands run, so after one to two bounds),
// a fresh goroutine takes over the waiter's role, so that TMRs and new
// commands keep flowing. The goroutine stuck in RunInline finishes its
// command and exits.
type Inliner interface {
	Handler
	Inline(c *Cmd) bool
	RunInline(c *Cmd)
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

// WaiterMode says how the UIO waiter waits for the kernel's signal. It is
// experimental: which one serves best is measured (BENCHMARKS.md), and
// the default stays WaiterNetpoll until a measurement says otherwise.
type WaiterMode uint8

const (
	// WaiterNetpoll parks the waiter goroutine in Go's netpoller: it
	// reads the non-blocking UIO descriptor, and the runtime's poller
	// thread wakes it (then a thread must be found to run it).
	WaiterNetpoll WaiterMode = iota
	// WaiterBlocking locks the waiter goroutine to its OS thread
	// (runtime.LockOSThread) and blocks that thread in poll(2) on the
	// UIO descriptor and an eventfd that interrupts it, so the kernel
	// wakes the thread that serves the ring directly. A Notifier that
	// cannot block in the kernel (a fake) waits as usual, on the locked
	// thread.
	WaiterBlocking
)

var waiterNames = [...]string{WaiterNetpoll: "netpoll", WaiterBlocking: "blocking"}

// String returns the name ParseWaiterMode takes.
func (m WaiterMode) String() string {
	if int(m) < len(waiterNames) {
		return waiterNames[m]
	}
	return fmt.Sprintf("WaiterMode(%d)", uint8(m))
}

// ParseWaiterMode returns the WaiterMode named s: "netpoll" or "blocking".
func ParseWaiterMode(s string) (WaiterMode, error) {
	for m, name := range waiterNames {
		if s == name {
			return WaiterMode(m), nil
		}
	}
	return 0, fmt.Errorf("tcmu: waiter %q: want netpoll or blocking", s)
}

// threadWaiter is implemented by a Notifier that can wait with the calling
// OS thread blocked in the kernel (WaiterBlocking): uioNotifier.
type threadWaiter interface {
	// waitThread is Wait, blocking the calling thread in the kernel.
	waitThread(ctx context.Context) error
	// releaseWait frees what waitThread set up; Run calls it once no
	// goroutine waits any more.
	releaseWait()
}

// DefaultInlineBound is used when RingOptions.InlineBound is zero: far
// above what a command served from memory takes (microseconds), far below
// the kernel's cmd_time_out and an initiator's abort timeouts.
const DefaultInlineBound = 20 * time.Millisecond

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
// The codec (type codec, below) speaks the ring ABI: it parses entries
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
	codec
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

// waiters holds what the UIO waiter needs; a waiter relieved of its role
// (see Inliner) hands it to the next one through start.
type waiters struct {
	ctx   context.Context
	inl   Inliner // the Handler, if it is an Inliner
	kicks chan struct{}
	errc  chan error
	// wg counts the waiter's role, not its goroutines: a relieved waiter
	// calls Done when it hands its role over.
	wg sync.WaitGroup

	// cur is the batch of the current waiter, which the watchdog checks.
	cur atomic.Pointer[inlineBatch]
	// runs counts the inline batches started, so that the watchdog
	// sees activity.
	runs atomic.Uint64
	// parked is set while the watchdog sleeps without a ticker; a waiter
	// starting a batch clears it and wakes the watchdog through wdWake.
	parked atomic.Bool
	wdWake chan struct{}
}

// start starts a UIO waiter. rest, if not nil, are the inline commands a
// relieved waiter had not started: the new waiter hands them to Handle.
func (w *waiters) start(r *Ring, rest *inlineBatch) {
	w.wg.Add(1)
	go func() {
		if rest != nil {
			r.requeue(rest)
		}
		if !r.waitLoop(w) {
			return // relieved: the role was handed over, and wg told
		}
		w.wg.Done()
	}()
}

// waitLoop turns Notifier.Wait returns into tokens on kicks until its
// context is done; any other Wait error goes to errc and ends the loop. It
// reports false if it ran an inline batch past the bound and a fresh
// waiter took over.
//
// With WaiterBlocking the goroutine is locked to its thread for its whole
// role; a relieved waiter unlocks when it returns, so its thread goes back
// to the runtime, and its successor (a new goroutine) locks its own.
func (r *Ring) waitLoop(w *waiters) bool {
	wait := r.n.Wait
	if r.waiter == WaiterBlocking {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if tw, ok := r.n.(threadWaiter); ok {
			wait = tw.waitThread
		}
	}
	b := new(inlineBatch)
	w.cur.Store(b)
	for {
		if err := wait(w.ctx); err != nil {
			if w.ctx.Err() == nil {
				w.errc <- fmt.Errorf("tcmu: wait for the kernel: %w", err)
			}
			return true
		}
		r.st.wakeups.Add(1)
		for spun := false; ; spun = true {
			pos, took, ran := r.tryPoll(w.inl, &b.cmds)
			if !ran {
				select {
				case w.kicks <- struct{}{}:
				default:
				}
				break
			}
			if !spun {
				r.st.directPolls.Add(1)
			}
			if len(b.cmds) > 0 && !b.run(r, w) {
				return false
			}
			// Spin only after a poll that took entries: the kernel
			// is active. Nothing is lost by spinning: every entry the
			// kernel queues is followed by a UIO signal (queue_cmd_ring,
			// or tcmu_unplug_device after a plugged batch), so one
			// that arrives after the spin gave up, or that the spin
			// saw and the poll above took, still makes the next wait
			// return (at worst to find nothing new).
			if !took || r.spin <= 0 || !spinOnHead(r.mem, pos, r.spin, r.waiter != WaiterBlocking) {
				break
			}
			r.st.spinHits.Add(1)
		}
	}
}

// spinOnHead watches cmd_head in mem for up to d and reports whether it
// moved away from pos. It makes no system call but a clock read every
// spinCheckEvery loads (vDSO with a tsc clocksource).
//
// With yield it calls runtime.Gosched at each clock read: a goroutine that
// spins keeps its P, and a goroutine waiting in the global run queue (one
// that yielded; nothing wakes an idle P for it) would wait out the spin.
// BenchmarkServeQD's submitter is one: without the yield, a 50us spin
// took its QD1 4 KiB reads from 5us to 120us per command on the fake
// kernel (every command waited for the spin to end). A locked goroutine
// (WaiterBlocking) does not yield: for it Gosched is a hand-off of its P
// to another thread and back, two futex wake-ups, even when nothing else
// is runnable.
func spinOnHead(mem []byte, pos uint32, d time.Duration, yield bool) bool {
	start := time.Now()
	for {
		for range spinCheckEvery {
			if loadCmdHead(mem) != pos {
				return true
			}
		}
		if time.Since(start) >= d {
			return loadCmdHead(mem) != pos
		}
		if yield {
			runtime.Gosched()
		}
	}
}

// spinCheckEvery is how many loads of cmd_head spinOnHead makes between
// two clock reads.
const spinCheckEvery = 32

// inlineBatch is the commands one poll of the UIO waiter accepted to run
// inline, and the watchdog state of their execution.
type inlineBatch struct {
	cmds []*Cmd
	// next is the index of the next command to start; the waiter and,
	// after a handover, its successor claim commands with Add.
	next atomic.Int32
	// since is when the running batch started (nanoseconds of
	// inlineEpoch), 0 between batches, -1 once handed over.
	since atomic.Int64
}

// inlineEpoch is the origin of inlineBatch.since.
var inlineEpoch = time.Now()

// run executes the batch's commands and reports whether the waiter keeps
// its role (false: it was relieved and must exit).
func (b *inlineBatch) run(r *Ring, w *waiters) bool {
	b.next.Store(0)
	start := max(int64(time.Since(inlineEpoch)), 1)
	b.since.Store(start)
	// No timer per batch: arming one interrupts the Go runtime's
	// blocking netpoll, a thread wake-up per command (a run with one,
	// BENCHMARKS.md, measured QD1 at 0.59x the code without inline
	// execution). The watchdog ticks while batches run and parks after a
	// while without any; wake it if so.
	// runs is written before parked is read and the watchdog does the
	// opposite, so one of them sees the other.
	w.runs.Add(1)
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		select {
		case w.wdWake <- struct{}{}:
		default:
		}
	}
	for b.since.Load() == start {
		i := int(b.next.Add(1)) - 1
		if i >= len(b.cmds) {
			break
		}
		r.st.inline.Add(1)
		w.inl.RunInline(b.cmds[i])
	}
	if !b.since.CompareAndSwap(start, 0) {
		return false // handed over; the successor owns the rest
	}
	clear(b.cmds)
	b.cmds = b.cmds[:0]
	return true
}

// watchdogIdleTicks is how many ticks without an inline batch the
// watchdog waits before it parks.
const watchdogIdleTicks = 8

// watchdog checks the current waiter's batch every InlineBound while
// batches run (expire), so a batch is relieved between one and two bounds
// after it started; it parks after watchdogIdleTicks ticks without any,
// so that idle LUNs cost no wake-ups. It returns when the waiters'
// context is done.
func (r *Ring) watchdog(w *waiters) {
	t := time.NewTicker(r.inlineBound)
	defer t.Stop()
	last, idle := w.runs.Load(), 0
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		b := w.cur.Load()
		if b == nil {
			continue // the first waiter has not started yet
		}
		b.expire(r, w)
		if n := w.runs.Load(); n != last || b.since.Load() > 0 {
			last, idle = n, 0
			continue
		}
		if idle++; idle < watchdogIdleTicks {
			continue
		}
		w.parked.Store(true)
		if w.runs.Load() != last && w.parked.CompareAndSwap(true, false) {
			last, idle = w.runs.Load(), 0
			continue // a batch started: keep ticking
		}
		// Parked, or a waiter cleared parked and sends a wake-up.
		t.Stop()
		select {
		case <-w.ctx.Done():
			return
		case <-w.wdWake:
		}
		last, idle = w.runs.Load(), 0
		t.Reset(r.inlineBound)
	}
}

// expire hands the waiter's role to a fresh goroutine if the batch
// started at least the bound ago and is still running.
func (b *inlineBatch) expire(r *Ring, w *waiters) {
	s := b.since.Load()
	if s <= 0 || int64(time.Since(inlineEpoch))-s < int64(r.inlineBound) {
		return
	}
	if !b.since.CompareAndSwap(s, -1) {
		return
	}
	r.st.handovers.Add(1)
	r.log.Warn("tcmu: an inline command runs long; a new goroutine waits for the kernel",
		"bound", r.inlineBound)
	w.start(r, b)
	w.wg.Done() // the relieved waiter's role
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
	from := r.pos
	err := r.parse()
	*batch, r.inl, r.batch = r.batch, nil, nil
	if err == nil {
		err = r.retireDirect()
	}
	r.asyncErr = err
	pos, took = r.pos, err == nil && r.pos != from
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
	return len(r.inflight)
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

// codec speaks the TCMU ring ABI over the shared mapping: it parses
// entries up to cmd_head, copying each into a Cmd for its sink, writes
// responses into the slots at the tail, stores cmd_tail and kicks. It is
// single-threaded code: no goroutines, no scheduling, no locks, and not
// safe for concurrent use; Ring runs it under Ring.mu.
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
func (r *codec) init(mem []byte, n Notifier, log *slog.Logger, st *ringCounters, s sink) error {
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
	*r = codec{
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
	r.ooo = r.caps.Has(CapOOOC)
	if unknown := r.caps &^ (CapOOOC | CapReadLen | CapTMR | CapKeepBuf); unknown != 0 {
		log.Debug("tcmu: unknown mailbox flags ignored", "flags", r.caps.String())
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
func (r *codec) parse() error {
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
			if err := r.parseCmd(e, off); err != nil {
				return err
			}
		case opTMR:
			if err := r.parseTMR(e, off); err != nil {
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
func (r *codec) checkShared() (head uint32, err error) {
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

// parseCmd validates a CMD entry, copies it into a Cmd and hands it to
// the sink.
func (r *codec) parseCmd(e entry, off uint32) error {
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
	r.inflight[id] = c
	s := slot{off: off, len: uint32(len(e)), isCmd: true}
	if !r.ooo {
		s.cmd = c
	}
	r.slots.push(s)
	r.st.commands.Add(1)
	r.st.inflight.Add(1)
	r.sink.takeCmd(c)
	return nil
}

// cdb returns the CDB at mapping offset o, which must lie in the command
// ring, with the length the kernel copied (scsi_command_size).
func (r *codec) cdb(o uint64) ([]byte, error) {
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

// parseTMR marks the commands a TMR entry names as aborted and tells the
// sink.
func (r *codec) parseTMR(e entry, off uint32) error {
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
	r.sink.takeTMR(kind, r.tmrCmds)
	clear(r.tmrCmds)
	return nil
}

// newCmd takes a Cmd from the free list or allocates one.
func (r *codec) newCmd() *Cmd {
	if n := len(r.free); n > 0 {
		c := r.free[n-1]
		r.free[n-1] = nil
		r.free = r.free[:n-1]
		return c
	}
	return &Cmd{}
}

// flush takes the completions in list (linked through Cmd.next, in
// completion order), writes responses into the slots at the tail, retires
// PAD, TMR and unknown entries there, and then publishes cmd_tail and
// kicks the kernel once.
func (r *codec) flush(list *Cmd) error {
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
func (r *codec) discard() {
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
func (r *codec) writeResponse(off uint32, c *Cmd) {
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
func (r *codec) release(c *Cmd) {
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
