// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/fakering"
)

// waiterVariants are the UIO waiter settings the ring tests run under.
var waiterVariants = []struct {
	name string
	opts RingOptions
}{
	{"netpoll", RingOptions{}},
	{"blocking", RingOptions{Waiter: WaiterBlocking}},
	{"netpoll+spin", RingOptions{Spin: 100 * time.Microsecond}},
	{"blocking+spin", RingOptions{Waiter: WaiterBlocking, Spin: 100 * time.Microsecond}},
}

// forWaiters runs test once per waiter variant.
func forWaiters(t *testing.T, test func(t *testing.T, opts RingOptions)) {
	t.Helper()
	for _, v := range waiterVariants {
		t.Run(v.name, func(t *testing.T) { test(t, v.opts) })
	}
}

// pollNotifier drives a Ring's WaiterBlocking path over the fake kernel:
// Kick goes to the fake, and the waits go to a uioNotifier over a FIFO,
// into which a goroutine writes 4 bytes for each of the fake's signals.
// So the waiter really blocks in poll(2), is interrupted through the
// eventfd, and reads the descriptor, as on /dev/uioN.
type pollNotifier struct {
	fake *fakering.Notifier
	uio  *uioNotifier
}

func newPollNotifier(t *testing.T, k *fakering.Kernel) *pollNotifier {
	t.Helper()
	n := &pollNotifier{fake: k.Notifier(), uio: fifoNotifier(t)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for n.fake.Wait(ctx) == nil {
			// A full FIFO (EAGAIN) already holds a pending signal.
			_, _ = unix.Write(fifoFd(t, n.uio), n.uio.wbuf[:])
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() }) // before fifoNotifier's Close
	return n
}

// fifoFd returns the raw descriptor of n's FIFO without (*os.File).Fd,
// which would make it blocking.
func fifoFd(t *testing.T, n *uioNotifier) int {
	raw, err := n.f.SyscallConn()
	if err != nil {
		t.Error(err)
		return -1
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func (n *pollNotifier) Wait(ctx context.Context) error       { return n.uio.Wait(ctx) }
func (n *pollNotifier) Kick() error                          { return n.fake.Kick() }
func (n *pollNotifier) waitThread(ctx context.Context) error { return n.uio.waitThread(ctx) }
func (n *pollNotifier) releaseWait()                         { n.uio.releaseWait() }

func TestParseWaiterMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want WaiterMode
		ok   bool
	}{
		{"netpoll", WaiterNetpoll, true},
		{"blocking", WaiterBlocking, true},
		{"", 0, false},
		{"Blocking", 0, false},
		{"spin", 0, false},
	} {
		got, err := ParseWaiterMode(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseWaiterMode(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}

func TestNewRingWaiterOptions(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	for _, opts := range []RingOptions{{Waiter: 2}, {Spin: -time.Microsecond}} {
		if _, err := NewRing(k.Mem(), k.Notifier(), opts); err == nil {
			t.Errorf("NewRing(%+v) succeeded", opts)
		}
	}
}

// tidHandler is an inlineHandler that records the thread each inline
// command runs on: the UIO waiter's.
type tidHandler struct {
	*inlineHandler
	mu   sync.Mutex
	tids []int // protected by mu
}

func (h *tidHandler) RunInline(c *Cmd) {
	h.mu.Lock()
	h.tids = append(h.tids, unix.Gettid())
	h.mu.Unlock()
	h.inlineHandler.RunInline(c)
}

// take returns the threads recorded since the last take.
func (h *tidHandler) take() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	tids := h.tids
	h.tids = nil
	return tids
}

// threadSampler runs goroutines that park and wake all the time and
// records the threads they ran on.
type threadSampler struct {
	mu   sync.Mutex
	seen map[int]bool // protected by mu
	stop chan struct{}
	wg   sync.WaitGroup
}

func startThreadSampler() *threadSampler {
	s := &threadSampler{seen: map[int]bool{}, stop: make(chan struct{})}
	for i := range 2 * runtime.GOMAXPROCS(0) {
		s.wg.Go(func() {
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				tid := unix.Gettid()
				s.mu.Lock()
				s.seen[tid] = true
				s.mu.Unlock()
				if i%2 == 0 {
					runtime.Gosched()
				} else {
					time.Sleep(20 * time.Microsecond)
				}
			}
		})
	}
	return s
}

// end stops the goroutines and reports whether one ever ran on tid.
func (s *threadSampler) end(tid int) bool {
	close(s.stop)
	s.wg.Wait()
	return s.seen[tid]
}

// TestRingBlockingWaiterOwnsThread: with WaiterBlocking the UIO waiter
// keeps one OS thread for itself (runtime.LockOSThread): every inline
// command runs on it and no other goroutine ever does, though the waiter
// parks between commands. After a handover the fresh waiter does the same
// on a thread of its own, and the relieved one unlocks as it exits, so
// its thread lives on (a goroutine that exits locked takes its thread
// with it). It uses the fake's Notifier, which parks in a channel receive
// rather than in poll(2): without the lock the runtime would run other
// goroutines on the waiter's thread while it is parked.
func TestRingBlockingWaiterOwnsThread(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := &tidHandler{inlineHandler: &inlineHandler{
		holdHandler: newHoldHandler(),
		block:       make(chan struct{}),
		blocked:     make(chan *Cmd, 1),
	}}
	r, stop := runRingOn(t, k, k.Notifier(), RingOptions{Waiter: WaiterBlocking, InlineBound: 20 * time.Millisecond}, h)

	// oneThread runs TURs while goroutines hop between threads, and
	// returns the one thread the inline ones ran on.
	oneThread := func(phase string) int {
		t.Helper()
		// First a TUR run inline: then the waiter has locked its
		// thread before the sampler starts (its thread may have run
		// anything before).
		for i := 0; len(h.take()) == 0; i++ {
			if i == 100 {
				t.Fatalf("%s: no TUR ran inline in 100 tries", phase)
			}
			if _, _, err := k.Do(context.Background(), testUnitReady, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		s := startThreadSampler()
		for range 100 {
			if _, _, err := k.Do(context.Background(), testUnitReady, nil, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Microsecond)
		}
		tids := h.take()
		if len(tids) < 10 {
			s.end(0)
			t.Fatalf("%s: only %d of 100 TURs ran inline", phase, len(tids))
		}
		for _, tid := range tids {
			if tid != tids[0] {
				s.end(0)
				t.Fatalf("%s: inline commands ran on threads %d and %d", phase, tids[0], tid)
			}
		}
		if s.end(tids[0]) {
			t.Errorf("%s: another goroutine ran on the waiter's thread %d", phase, tids[0])
		}
		return tids[0]
	}
	first := oneThread("first waiter")

	h.blockInline(t, k)
	if tids := h.take(); len(tids) != 1 || tids[0] != first {
		t.Fatalf("the blocking INQUIRY ran on %v, want [%d]", tids, first)
	}
	deadline := time.Now().Add(time.Minute)
	for r.Stats().Handovers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no handover after a minute")
		}
		time.Sleep(time.Millisecond)
	}
	// While the INQUIRY is stuck nothing runs inline (the ring is
	// busy); once it returns, the relieved waiter unlocks and exits,
	// and the fresh one serves the TURs inline on its own thread.
	close(h.block)
	waitIdle(t, k)
	second := oneThread("fresh waiter")
	if second == first {
		t.Errorf("the fresh waiter runs on the relieved waiter's thread %d", first)
	}
	// A goroutine that exits locked takes its thread with it.
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", first)); err != nil {
		t.Errorf("the relieved waiter's thread %d is gone (it exited locked?): %v", first, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRingWaiterCancel: cancelling Run ends the wait at once in every
// waiter variant (the blocking one is in poll(2)).
func TestRingWaiterCancel(t *testing.T) {
	forWaiters(t, func(t *testing.T, opts RingOptions) {
		k := newKernel(t, fakering.Options{})
		_, stop := runRing(t, k, opts, &echoHandler{})
		if _, _, err := k.Do(context.Background(), testUnitReady, nil, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // the waiter is back waiting
		done := make(chan error, 1)
		go func() { done <- stop() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run still running 10s after its context was cancelled")
		}
	})
}

// TestRingSpin: with RingOptions.Spin the waiter serves an entry queued
// while it spins without waiting (SpinHits), and one queued just after
// the spin gave up through the next wake-up: nothing is lost either way.
func TestRingSpin(t *testing.T) {
	for _, mode := range []WaiterMode{WaiterNetpoll, WaiterBlocking} {
		t.Run(mode.String(), func(t *testing.T) {
			const spin = 300 * time.Millisecond
			k := newKernel(t, fakering.Options{})
			h := &inlineHandler{holdHandler: newHoldHandler()}
			r, stop := runRing(t, k, RingOptions{Waiter: mode, Spin: spin}, h)
			do := func() {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, _, err := k.Do(ctx, testUnitReady, nil, 0); err != nil {
					t.Fatal(err)
				}
			}
			// The ring goroutine may take the first TUR (then no spin
			// follows); try until a TUR lands in a spin.
			for i := 0; r.Stats().SpinHits == 0; i++ {
				if i == 20 {
					t.Fatalf("no spin hit in 20 tries: %+v", r.Stats())
				}
				do()
				time.Sleep(spin / 10)
				do()
			}
			st := r.Stats()
			// Past the spin that followed the hit: the next TUR must
			// wake the waiter (after the stale signal of the TUR the
			// spin took).
			time.Sleep(spin + spin/2)
			do()
			time.Sleep(spin / 10)
			if got := r.Stats(); got.Wakeups <= st.Wakeups || got.SpinHits != st.SpinHits {
				t.Errorf("after the spin: stats %+v, before %+v; want more wake-ups and no spin hit", got, st)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if st := r.Stats(); st.InFlight != 0 {
				t.Errorf("Stats = %+v, want nothing in flight", st)
			}
		})
	}
}

// TestRingSpinEdges submits commands at random gaps around the spin
// length, so that some land during a spin, some just as it gives up and
// some after it: every command completes.
func TestRingSpinEdges(t *testing.T) {
	for _, mode := range []WaiterMode{WaiterNetpoll, WaiterBlocking} {
		t.Run(mode.String(), func(t *testing.T) {
			const spin = 200 * time.Microsecond
			k := newKernel(t, fakering.Options{})
			h := &inlineHandler{holdHandler: newHoldHandler()}
			r, stop := runRing(t, k, RingOptions{Waiter: mode, Spin: spin}, h)
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 1000
			for i := range n {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := k.Do(ctx, testUnitReady, nil, 0)
				cancel()
				if err != nil {
					t.Fatalf("TUR %d: %v (stats %+v)", i, err, r.Stats())
				}
				// Busy-wait: a sleep's granularity would blur the edge.
				gap := time.Duration(rng.Int64N(int64(2 * spin)))
				for start := time.Now(); time.Since(start) < gap; {
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			st := r.Stats()
			if st.Completions != n || st.InFlight != 0 {
				t.Errorf("Stats = %+v, want %d completions", st, n)
			}
			t.Logf("stats %+v", st)
		})
	}
}

// TestRingBlockingWaiterError: a failing wait in poll(2) (the device
// closed under the ring) ends Run with the error rather than hang.
func TestRingBlockingWaiterError(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	n := newPollNotifier(t, k)
	r, err := NewRing(k.Mem(), n, RingOptions{Waiter: WaiterBlocking})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background(), &echoHandler{r: r}) }()
	time.Sleep(10 * time.Millisecond)
	n.uio.interrupt() // what Device.Close does
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Run = %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10s after the device closed")
	}
}

// inquiry is an INQUIRY CDB; inlineHandler blocks on it.
var inquiry = []byte{0x12, 0, 0, 0, 36, 0}

// inlineHandler runs TEST UNIT READY and INQUIRY inline (Inliner) and
// holds every other command like holdHandler. With block set, the first
// INQUIRY run inline is sent on blocked and waits for block to close.
type inlineHandler struct {
	*holdHandler
	r       *Ring
	block   chan struct{}
	blocked chan *Cmd
	stuck   atomic.Bool
	handled atomic.Int32 // TURs and INQUIRYs given to Handle
	ranTUR  atomic.Int32 // TURs run inline
}

// setRing lets runRing give h its ring before the ring runs.
func (h *inlineHandler) setRing(r *Ring) { h.r = r }

// blockInline submits INQUIRYs until the waiter runs one inline, where it
// blocks (h.block), and returns it. The ring goroutine may take an
// INQUIRY instead (then Handle completes it): hence the retries.
func (h *inlineHandler) blockInline(t *testing.T, k *fakering.Kernel) *Cmd {
	t.Helper()
	var stuck *Cmd
	for i := 0; stuck == nil; i++ {
		if i == 100 {
			t.Fatal("no INQUIRY ran inline in 100 tries")
		}
		submit(t, k, inquiry, nil, 36)
		select {
		case stuck = <-h.blocked:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return stuck
}

// Handle completes a TUR or INQUIRY the ring goroutine took (Inliner
// applies only to the waiter's polls) and holds the others.
func (h *inlineHandler) Handle(c *Cmd) {
	if h.inline(c) {
		h.handled.Add(1)
		h.r.Complete(c, statusFor(c.ID))
		return
	}
	h.holdHandler.Handle(c)
}

func (h *inlineHandler) inline(c *Cmd) bool {
	return c.CDB[0] == testUnitReady[0] || c.CDB[0] == inquiry[0]
}

func (h *inlineHandler) Inline(c *Cmd) bool { return h.inline(c) }

func (h *inlineHandler) RunInline(c *Cmd) {
	if c.CDB[0] == testUnitReady[0] {
		h.ranTUR.Add(1)
	}
	if c.CDB[0] == inquiry[0] && h.block != nil && h.stuck.CompareAndSwap(false, true) {
		h.blocked <- c
		<-h.block
	}
	h.r.Complete(c, statusFor(c.ID))
}

func TestRingInline(t *testing.T) { forWaiters(t, testRingInline) }

func testRingInline(t *testing.T, opts RingOptions) {
	k := newKernel(t, fakering.Options{})
	h := &inlineHandler{holdHandler: newHoldHandler()}
	r, stop := runRing(t, k, opts, h)
	const n = 50
	for i := range n {
		resp, _, err := k.Do(context.Background(), testUnitReady, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := statusFor(resp.ID).Status; resp.Status != want {
			t.Fatalf("TUR %d: status %#x, want %#x", i, resp.Status, want)
		}
	}
	// A command the Inliner declines goes to Handle.
	id := submit(t, k, read10(0, 1), nil, 512)
	c := h.take(t, 1)[0]
	if c.ID != id {
		t.Fatalf("Handle got cmd %d, want %d", c.ID, id)
	}
	r.Complete(c, Response{})
	waitIdle(t, k)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	// The ring goroutine may take a TUR when the waiter found the ring
	// busy; it never runs it inline, so Handle got it.
	if got := int(st.Inline) + int(h.handled.Load()); got != n || st.Inline == 0 {
		t.Errorf("Stats.Inline = %d, %d TURs went to Handle; want %d in all, some inline", st.Inline, h.handled.Load(), n)
	}
	t.Logf("stats %+v", st)
	if st.Handovers != 0 || st.InFlight != 0 {
		t.Errorf("Stats = %+v, want no handover and nothing in flight", st)
	}
}

// TestRingInlineBlocked blocks an inline command past the bound: a new
// waiter takes over, so a TMR naming the stuck command and new commands
// still reach the Handler, and everything completes once it unblocks.
func TestRingInlineBlocked(t *testing.T) {
	for _, tt := range []struct {
		name string
		idle time.Duration // before the blocking command
	}{
		{"watchdog ticking", 0},
		// More than watchdogIdleTicks bounds: the watchdog has parked
		// and the blocking batch must wake it.
		{"watchdog parked", 2 * watchdogIdleTicks * 20 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			forWaiters(t, func(t *testing.T, opts RingOptions) { testRingInlineBlocked(t, opts, tt.idle) })
		})
	}
}

func testRingInlineBlocked(t *testing.T, opts RingOptions, idle time.Duration) {
	k := newKernel(t, fakering.Options{})
	h := &inlineHandler{
		holdHandler: newHoldHandler(),
		block:       make(chan struct{}),
		blocked:     make(chan *Cmd, 1),
	}
	opts.InlineBound = 20 * time.Millisecond
	r, stop := runRing(t, k, opts, h)
	if idle > 0 {
		// Some inline commands, then quiet.
		for range 5 {
			if _, _, err := k.Do(context.Background(), testUnitReady, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(idle)
	}
	stuck := h.blockInline(t, k)
	stuckID := stuck.ID
	before := k.Completed()
	deadline := time.Now().Add(time.Minute)
	for r.Stats().Handovers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no handover after a minute")
		}
		time.Sleep(time.Millisecond)
	}
	// The ring still flows: a TMR and two commands, one of which the
	// Inliner would take, all reach the Handler.
	if err := k.SubmitTMR(context.Background(), uint8(TMRAbortTask), []uint16{stuckID}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-h.tmrs:
		if !slices.Equal(ev.ids, []uint16{stuckID}) {
			t.Errorf("TMR aborted %v, want [%d]", ev.ids, stuckID)
		}
	case <-time.After(time.Minute):
		t.Fatal("no TMR callback while an inline command is blocked")
	}
	if !stuck.Aborted() {
		t.Error("the blocked command is not marked aborted")
	}
	submit(t, k, read10(0, 1), nil, 512)
	submit(t, k, testUnitReady, nil, 0)
	r.Complete(h.take(t, 1)[0], Response{})
	deadline = time.Now().Add(time.Minute)
	for k.Completed() != before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("kernel completed %d commands, want %d while one is blocked", k.Completed(), before+2)
		}
		time.Sleep(time.Millisecond)
	}
	close(h.block)
	waitIdle(t, k)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	// Before the stuck INQUIRY, only the ring goroutine took INQUIRYs
	// (Handle); after it, the TUR went to Handle too.
	if st.Handovers != 1 || st.InFlight != 0 || st.Inline-uint64(h.ranTUR.Load()) != 1 || st.Commands != before+3 {
		t.Errorf("Stats = %+v with %d commands before the stuck one; want 1 handover, 1 inline, nothing in flight",
			st, before)
	}
}
