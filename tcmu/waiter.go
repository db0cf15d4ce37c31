// SPDX-License-Identifier: Apache-2.0

package tcmu

// This file is the UIO waiter: the goroutine that waits for the kernel's
// signal, its inline execution of commands (Inliner) and the watchdog that
// relieves it when one runs long. It never takes Ring.mu itself: it enters
// the ring through the scheduler (tryPoll, requeue in ring.go).

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

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
			if !took || r.spin <= 0 || !spinOnHead(r.codec.mem, pos, r.spin, r.waiter != WaiterBlocking) {
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
