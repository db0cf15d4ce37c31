// SPDX-License-Identifier: Apache-2.0

package tcmu

// This file is the executors: the goroutines that wait for the kernel,
// take commands from the ring and execute them (see Ring), their queue,
// and the watchdog that has another executor wait for the kernel when a
// command runs long. They enter the codec only under Ring.mu.

import (
	"context"
	"fmt"
	"time"
)

// DefaultInlineBound is used when RingOptions.InlineBound is zero: far
// above what a command served from memory takes (microseconds), far below
// the kernel's cmd_time_out and an initiator's abort timeouts.
const DefaultInlineBound = 20 * time.Millisecond

// executor is one executor goroutine's state, shared with the watchdog
// and with WillBlock (through Cmd.ex).
type executor struct {
	// since is when the command it runs started (nanoseconds of
	// execEpoch), 0 when it runs none. Guarded by Ring.mu.
	since int64
	// counted: it runs a command counted in sched.running (taken and not
	// announced with WillBlock, nor seen stuck by the watchdog).
	// Guarded by Ring.mu.
	counted bool
	// slot: it holds one of the blocking slots (WillBlock). Guarded by
	// Ring.mu.
	slot bool
	// deferred is the command WillBlock refused a slot: Handle returns
	// without completing it, and the executor queues it for a slot.
	// Guarded by Ring.mu.
	deferred *Cmd
	// bell wakes it when it is parked (bell.go).
	bell *bell
}

// execEpoch is the origin of executor.since.
var execEpoch = time.Now()

func execClock() int64 { return max(int64(time.Since(execEpoch)), 1) }

// sched is the executors' shared state, guarded by Ring.mu.
type sched struct {
	ctx context.Context // ends the kernel waits (Run's intake)
	// queue holds the parsed commands no executor has taken yet; slow
	// those WillBlock found no slot for, to run again once one is free.
	queue, slow cmdQueue
	// blocking counts the blocking slots taken (WillBlock): at most
	// Executors-1, so that one executor is always free to wait for the
	// kernel and to answer commands served from memory.
	blocking int
	// all lists the live executors, for the watchdog.
	all []*executor
	// parked lists the executors parked on their bells and not rung
	// since, the latest last (it is woken first: its thread and caches
	// are the warmest).
	parked []*executor
	// execs counts the live executors; woken those rung (or started)
	// that have not taken the lock since.
	execs, woken int
	// running counts the executors running a command that may not block
	// (executor.counted).
	running int
	// waiting: an executor is in Notifier.Wait (or on its way there).
	waiting bool
	// stopping: intake ended; executors finish the queue and exit.
	stopping bool
	// failed is closed by stopLocked when the ring failed or stops.
	failed chan struct{}
	// waitDone is closed once stopping and nobody waits for the kernel.
	waitDone chan struct{}
	// exited is closed once stopping and every executor returned
	// (exitedClosed).
	exited       chan struct{}
	exitedClosed bool
	// wdParked: the watchdog sleeps until wdWake; wdWake wakes it.
	wdParked bool
	wdWake   chan struct{}
}

// init prepares s for Run.
//
// Preconditions: Ring.mu is held.
func (s *sched) init(r *Ring, ctx context.Context) {
	s.ctx = ctx
	s.failed = make(chan struct{})
	s.waitDone = make(chan struct{})
	s.exited = make(chan struct{})
	s.wdWake = make(chan struct{}, 1)
}

// stopLocked ends intake: parked executors are woken to finish the queue
// and exit, and Run is told.
//
// Preconditions: Ring.mu is held.
func (r *Ring) stopLocked() {
	s := &r.sched
	if s.stopping || s.failed == nil {
		return
	}
	s.stopping = true
	close(s.failed)
	for len(s.parked) > 0 {
		s.wake()
	}
	if !s.waiting {
		close(s.waitDone)
	}
	s.checkExited()
	if s.wdParked {
		s.wdParked = false
		s.wdWake <- struct{}{}
	}
}

// checkExited closes exited once intake has ended and no executor is
// left.
//
// Preconditions: Ring.mu is held.
func (s *sched) checkExited() {
	if s.stopping && s.execs == 0 && !s.exitedClosed {
		s.exitedClosed = true
		close(s.exited)
	}
}

// wake rings the bell of the executor that parked last.
//
// Preconditions: Ring.mu is held; an executor is parked.
func (s *sched) wake() {
	ex := s.parked[len(s.parked)-1]
	s.parked[len(s.parked)-1] = nil
	s.parked = s.parked[:len(s.parked)-1]
	s.woken++
	ex.bell.ring()
}

// spawn starts an executor.
//
// Preconditions: Ring.mu is held; intake has not ended, or commands wait
// in the queue.
func (s *sched) spawn(r *Ring) {
	ex := &executor{bell: newBell()}
	s.all = append(s.all, ex)
	s.execs++
	s.woken++ // a new executor counts as woken until it takes the lock
	r.st.executors.Store(uint64(s.execs))
	go r.executor(ex)
}

// helper wakes a parked executor or starts one, if there is room; it
// reports whether it did.
//
// Preconditions: Ring.mu is held.
func (s *sched) helper(r *Ring) bool {
	if s.stopping {
		return false
	}
	if len(s.parked) > 0 {
		s.wake()
	} else if s.execs < r.maxExecs {
		s.spawn(r)
	} else {
		return false
	}
	r.st.handoffs.Add(1)
	return true
}

// dispatch wakes helpers for the commands left in the queue while fewer
// than Parallel executors run commands that may not block, and one to
// wait for the kernel if executors are blocked and nobody waits: so
// blocked commands never stop intake (TMRs, other commands).
//
// Preconditions: Ring.mu is held.
func (s *sched) dispatch(r *Ring) {
	for s.queue.len() > s.woken && s.running+s.woken < r.parallel {
		if !s.helper(r) {
			break
		}
	}
	if !s.waiting && s.woken == 0 && s.running < s.execs-len(s.parked) {
		// Some executor is blocked (not counted in running): make
		// sure someone waits for the kernel.
		s.helper(r)
	}
}

// executor runs commands until intake has ended and the queue is empty.
func (r *Ring) executor(ex *executor) {
	r.mu.Lock()
	r.sched.woken--
	s := &r.sched
	for {
		c := r.next(ex)
		if c == nil {
			break
		}
		r.unlock()
		r.h.Handle(c)
		r.mu.Lock()
		ex.since = 0
		if ex.counted {
			ex.counted = false
			s.running--
		}
		if ex.slot {
			ex.slot = false
			s.blocking--
		}
		if ex.deferred != nil {
			s.slow.push(ex.deferred)
			ex.deferred = nil
		}
	}
	s.execs--
	for i, e := range s.all {
		if e == ex {
			s.all[i] = s.all[len(s.all)-1]
			s.all[len(s.all)-1] = nil
			s.all = s.all[:len(s.all)-1]
			break
		}
	}
	r.st.executors.Store(uint64(s.execs))
	ex.bell.close() // nobody rings it: it is not parked
	s.checkExited()
	r.unlock()
}

// next returns the next command for ex to run, marked as started (or nil
// once intake has ended and the queue is empty). Meanwhile it may parse
// the ring, wait for the kernel or park.
//
// Preconditions: Ring.mu is held; it is held again on return.
func (r *Ring) next(ex *executor) *Cmd {
	s := &r.sched
	for {
		if s.slow.len() > 0 && s.blocking < r.maxExecs-1 {
			// A command that waited for a blocking slot: it runs
			// with the slot taken (its WillBlock returns true).
			c := s.slow.pop()
			s.blocking++
			ex.slot, ex.since = true, execClock()
			c.ex = ex
			s.dispatch(r)
			return c
		}
		if s.queue.len() == 0 && !s.stopping {
			// Entries the kernel queued while this executor ran are
			// taken without waiting for its signal.
			r.setErr(r.parse())
		}
		// At the bound, the queue is left to the executors counted in
		// running: each of them comes back here once its command is
		// done. A waiter back from the kernel or a woken executor that
		// finds the bound taken (by one that took a command first)
		// waits or parks instead.
		if c := s.popUnder(r.parallel); c != nil {
			ex.counted, ex.since = true, execClock()
			c.ex = ex
			s.running++
			if s.running == 1 && s.wdParked {
				s.wdParked = false
				s.wdWake <- struct{}{}
			}
			h := r.st.handoffs.Load()
			s.dispatch(r)
			if r.st.handoffs.Load() == h {
				r.st.inline.Add(1)
			}
			return c
		}
		if s.stopping {
			// What is left in slow runs on the executors holding
			// the slots, as they free them; what is left in queue
			// (at the bound) on the executors counted in running.
			return nil
		}
		if !s.waiting {
			s.waiting = true
			r.unlock()
			err := r.n.Wait(s.ctx)
			r.mu.Lock()
			s.waiting = false
			if s.stopping {
				close(s.waitDone)
			}
			if err != nil {
				if s.ctx.Err() == nil {
					r.setErr(fmt.Errorf("tcmu: wait for the kernel: %w", err))
				}
				continue
			}
			r.st.wakeups.Add(1)
			continue
		}
		s.parked = append(s.parked, ex)
		r.unlock()
		ex.bell.wait()
		r.mu.Lock()
		s.woken--
	}
}

// popUnder takes the oldest queued command if fewer than parallel
// executors run commands that may not block; nil otherwise.
//
// Preconditions: Ring.mu is held.
func (s *sched) popUnder(parallel int) *Cmd {
	if s.running >= parallel {
		return nil
	}
	return s.queue.pop()
}

// WillBlock asks the Ring whether the Handle call running c may now wait
// on something other than memory (a file system, a device). It must be
// called from the Handle call that got c, before Complete; elsewhere it
// returns true and does nothing.
//
// If it returns true, the executor holds one of the blocking slots until
// Handle returns: it no longer counts against RingOptions.Parallel, and
// if nobody waits for the kernel another executor is woken (or started)
// to do so. There are Executors-1 slots, so one executor is always free
// to wait for the kernel and to run commands served from memory, however
// many commands are stuck in a hung file system.
//
// If it returns false, every slot is taken: Handle must return at once
// without completing c, having changed nothing it cannot do again. The
// Ring calls Handle(c) again once a slot is free; WillBlock then returns
// true.
func (r *Ring) WillBlock(c *Cmd) bool {
	ex := c.ex
	if ex == nil {
		return true
	}
	r.mu.Lock()
	s := &r.sched
	if ex.slot {
		r.mu.Unlock()
		return true
	}
	if s.blocking >= r.maxExecs-1 {
		ex.deferred = c
		r.mu.Unlock()
		return false
	}
	s.blocking++
	ex.slot = true
	if ex.counted {
		ex.counted = false
		s.running--
	}
	s.dispatch(r)
	r.unlock()
	return true
}

// Oldest returns how long the oldest command an executor is running has
// been running (0 if none): for a stall detector.
func (r *Ring) Oldest() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var oldest int64
	now := execClock()
	for _, ex := range r.sched.all {
		if ex.since != 0 {
			oldest = max(oldest, now-ex.since)
		}
	}
	return time.Duration(oldest)
}

// watchdogIdleTicks is how many ticks with no command running the
// watchdog waits before it parks.
const watchdogIdleTicks = 8

// watchdog checks every InlineBound, while commands run, whether one of
// them has run longer than the bound while counted as not blocking; such
// an executor is treated as blocked (as if it had called WillBlock), so
// that another one waits for the kernel. It parks after watchdogIdleTicks
// ticks with nothing running, so that idle LUNs cost no wake-ups, and
// returns when intake ends.
func (r *Ring) watchdog(ctx context.Context) {
	t := time.NewTicker(r.inlineBound)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		s := &r.sched
		if s.stopping {
			r.mu.Unlock()
			return
		}
		now := execClock()
		for _, ex := range s.all {
			if ex.counted && now-ex.since >= int64(r.inlineBound) {
				ex.counted = false
				s.running--
				r.st.handovers.Add(1)
				r.log.Warn("tcmu: a command runs long; another executor waits for the kernel",
					"bound", r.inlineBound)
				s.dispatch(r)
			}
		}
		if s.running > 0 {
			idle = 0
			r.unlock()
			continue
		}
		if idle++; idle < watchdogIdleTicks {
			r.unlock()
			continue
		}
		s.wdParked = true
		r.unlock()
		t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-s.wdWake:
		}
		idle = 0
		t.Reset(r.inlineBound)
	}
}

// cmdQueue is a growable FIFO of commands (a ring buffer), so that the
// steady state allocates nothing.
type cmdQueue struct {
	buf  []*Cmd
	head int
	n    int
}

func (q *cmdQueue) len() int { return q.n }

func (q *cmdQueue) push(c *Cmd) {
	if q.n == len(q.buf) {
		nb := make([]*Cmd, max(16, 2*len(q.buf)))
		for i := range q.n {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = c
	q.n++
}

func (q *cmdQueue) pop() *Cmd {
	if q.n == 0 {
		return nil
	}
	c := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return c
}
