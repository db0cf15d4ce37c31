// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/internal/fakering"
)

func TestNewRingBadOptions(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	for _, opts := range []RingOptions{{Executors: -1}, {Executors: 1}, {Parallel: -1}} {
		if _, err := NewRing(k.Mem(), k.Notifier(), opts); err == nil {
			t.Errorf("NewRing(%+v) succeeded", opts)
		}
	}
}

// TestRingWaiterCancel: cancelling Run ends the executor's wait for the
// kernel at once.
func TestRingWaiterCancel(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	_, stop := runRing(t, k, RingOptions{}, &echoHandler{})
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
}

// inquiry is an INQUIRY CDB.
var inquiry = []byte{0x12, 0, 0, 0, 36, 0}

// execHandler runs commands on the executors: TURs complete at once (from
// memory); INQUIRYs block until block is closed, after WillBlock if
// announce is set (a WillBlock refused is counted and the command
// returned, to be handed back); everything it ran is counted, with the
// goroutines it ran on and the most that ran at once.
type execHandler struct {
	r        *Ring
	announce bool
	block    chan struct{}
	entered  chan *Cmd
	refused  atomic.Int32
	tmrs     atomic.Int32
	running  atomic.Int32
	maxRun   atomic.Int32
	mu       sync.Mutex
	gids     map[uint64]int // protected by mu
}

func newExecHandler(announce bool) *execHandler {
	return &execHandler{announce: announce, block: make(chan struct{}), entered: make(chan *Cmd, 64), gids: map[uint64]int{}}
}

func (h *execHandler) setRing(r *Ring) { h.r = r }

func (h *execHandler) Handle(c *Cmd) {
	n := h.running.Add(1)
	defer h.running.Add(-1)
	for m := h.maxRun.Load(); n > m && !h.maxRun.CompareAndSwap(m, n); m = h.maxRun.Load() {
	}
	h.mu.Lock()
	h.gids[goid()]++
	h.mu.Unlock()
	if c.CDB[0] == inquiry[0] {
		if h.announce && !h.r.WillBlock(c) {
			h.refused.Add(1)
			return
		}
		h.entered <- c
		<-h.block
	}
	if c.CDB[0] == testUnitReady[0] {
		time.Sleep(200 * time.Microsecond) // long enough to overlap
	}
	h.r.Complete(c, statusFor(c.ID))
}

func (h *execHandler) TMR(TMRType, []*Cmd) { h.tmrs.Add(1) }

// goid returns the calling goroutine's id, from its stack header.
func goid() uint64 {
	var b [64]byte
	s := string(b[:runtime.Stack(b[:], false)])
	var id uint64
	fmt.Sscanf(s, "goroutine %d ", &id)
	return id
}

// TestExecutorRunsWhatItTakes: commands sent one at a time run on the
// executor that took them from the ring, with no other goroutine woken
// (Inline, no Handoffs).
func TestExecutorRunsWhatItTakes(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newExecHandler(false)
	r, stop := runRing(t, k, RingOptions{}, h)
	for range 50 {
		if resp, _, err := k.Do(context.Background(), testUnitReady, nil, 0); err != nil || resp.Status != 0 {
			t.Fatalf("TUR: %+v, %v", resp, err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Inline != 50 || st.Handoffs != 0 {
		t.Errorf("50 TURs one at a time: Inline %d, Handoffs %d; want 50, 0", st.Inline, st.Handoffs)
	}
	if len(h.gids) != 1 {
		t.Errorf("the TURs ran on %d goroutines, want 1", len(h.gids))
	}
}

// TestExecutorParallel: a burst of commands served from memory runs on
// more than one executor, and never on more than Parallel at once.
func TestExecutorParallel(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newExecHandler(false)
	// A long bound: under the race detector a TUR may run past the
	// default, and the watchdog would rightly count it as blocked.
	r, stop := runRing(t, k, RingOptions{Parallel: 2, Executors: 4, InlineBound: time.Minute}, h)
	ctx := context.Background()
	for range 20 {
		for range 16 {
			if _, err := k.Submit(ctx, testUnitReady, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m := h.maxRun.Load(); m < 2 || m > 2 {
		t.Errorf("at most %d commands ran at once, want 2 (Parallel)", m)
	}
	if st := r.Stats(); st.Handoffs == 0 {
		t.Errorf("no hand-off for bursts of 16: %+v", st)
	}
}

// boundHandler: an INQUIRY takes a blocking slot (WillBlock) and waits
// for hold; the first TUR waits for gate without WillBlock (counted
// against Parallel); every TUR is sent to tur when it starts, and the
// most TURs that ran at once is kept.
type boundHandler struct {
	r             *Ring
	hold, gate    chan struct{}
	inq, tur      chan *Cmd
	first         atomic.Bool
	running, most atomic.Int32
}

func (h *boundHandler) setRing(r *Ring) { h.r = r }

func (h *boundHandler) Handle(c *Cmd) {
	if c.CDB[0] == inquiry[0] {
		if !h.r.WillBlock(c) {
			panic("boundHandler: no blocking slot")
		}
		h.inq <- c
		<-h.hold
		h.r.Complete(c, Response{})
		return
	}
	n := h.running.Add(1)
	for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
	}
	h.tur <- c
	if h.first.CompareAndSwap(false, true) {
		<-h.gate
	}
	h.running.Add(-1)
	h.r.Complete(c, Response{})
}

func (h *boundHandler) TMR(TMRType, []*Cmd) {}

// TestExecutorParallelBound: with one executor blocked in a slot and one
// running a command counted against Parallel 1, the executor that then
// waits for the kernel (there must be one, for TMRs) takes the next
// command off the ring but does not run it: it runs once the counted one
// is done, on an executor coming back for more.
func TestExecutorParallelBound(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := &boundHandler{hold: make(chan struct{}), gate: make(chan struct{}),
		inq: make(chan *Cmd, 4), tur: make(chan *Cmd, 4)}
	r, stop := runRing(t, k, RingOptions{Parallel: 1, Executors: 4, InlineBound: time.Minute}, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := k.Submit(ctx, inquiry, nil, 36); err != nil {
		t.Fatal(err)
	}
	<-h.inq
	if _, err := k.Submit(ctx, testUnitReady, nil, 0); err != nil {
		t.Fatal(err)
	}
	<-h.tur // the first TUR runs, counted, until gate
	if _, err := k.Submit(ctx, testUnitReady, nil, 0); err != nil {
		t.Fatal(err)
	}
	// The second TUR must not start while the first runs. Give an
	// executor that would wrongly take it time to do so.
	select {
	case <-h.tur:
		t.Fatalf("a second TUR ran beside a counted one with Parallel 1 (%+v)", r.Stats())
	case <-time.After(200 * time.Millisecond):
	}
	close(h.gate)
	select {
	case <-h.tur:
	case <-ctx.Done():
		t.Fatal("the second TUR never ran after the first one finished")
	}
	close(h.hold)
	if err := k.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := k.Completed(); got != 3 {
		t.Errorf("kernel completed %d commands, want 3", got)
	}
	if m := h.most.Load(); m != 1 {
		t.Errorf("%d TURs ran at once, want 1", m)
	}
}

// TestWillBlockKeepsServing: while commands block after WillBlock, another
// executor waits for the kernel: TURs and TMRs still flow. With
// Executors 3 there are 2 blocking slots: the third blocking command is
// refused a slot (Handle returns it) and runs once a slot is free.
func TestWillBlockKeepsServing(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newExecHandler(true)
	r, stop := runRing(t, k, RingOptions{Executors: 3}, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := k.Submit(ctx, inquiry, nil, 36); err != nil {
			t.Fatal(err)
		}
	}
	<-h.entered
	<-h.entered
	for h.refused.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the third blocking command was never refused a slot")
		}
		time.Sleep(time.Millisecond)
	}
	for range 10 {
		if resp, _, err := k.Do(ctx, testUnitReady, nil, 0); err != nil || resp.Status != 0 {
			t.Fatalf("TUR while two commands block: %+v, %v", resp, err)
		}
	}
	if err := k.SubmitTMR(ctx, uint8(TMRAbortTask), []uint16{0}); err != nil {
		t.Fatal(err)
	}
	for h.tmrs.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("TMR not taken while two commands block")
		}
		time.Sleep(time.Millisecond)
	}
	close(h.block)
	if err := k.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := k.Completed(); got != 13 {
		t.Errorf("kernel completed %d commands, want 13", got)
	}
	if st := r.Stats(); st.Executors > 3 {
		t.Errorf("%d executors, want at most 3", st.Executors)
	}
}

// TestWatchdogHandover: a command that blocks without WillBlock is seen
// by the watchdog after InlineBound, and another executor takes over
// waiting for the kernel: TURs flow again before it returns.
func TestWatchdogHandover(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newExecHandler(false)
	r, stop := runRing(t, k, RingOptions{InlineBound: 10 * time.Millisecond}, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := k.Submit(ctx, inquiry, nil, 36); err != nil {
		t.Fatal(err)
	}
	<-h.entered
	if resp, _, err := k.Do(ctx, testUnitReady, nil, 0); err != nil || resp.Status != 0 {
		t.Fatalf("TUR while a command is stuck: %+v, %v", resp, err)
	}
	if st := r.Stats(); st.Handovers == 0 {
		t.Errorf("TUR served with no handover: %+v", st)
	}
	if d := r.Oldest(); d < 10*time.Millisecond {
		t.Errorf("Oldest = %v with a command stuck past the bound", d)
	}
	close(h.block)
	if err := k.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRingDoneAfterStuckExecutor: Run returns after its drain timeout with
// an executor stuck in Handle; Done closes only once that one returned.
func TestRingDoneAfterStuckExecutor(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newExecHandler(true)
	r, stop := runRing(t, k, RingOptions{DrainTimeout: 50 * time.Millisecond}, h)
	if _, err := k.Submit(context.Background(), inquiry, nil, 36); err != nil {
		t.Fatal(err)
	}
	<-h.entered
	if err := stop(); !errors.Is(err, ErrDrainTimeout) {
		t.Errorf("Run = %v, want ErrDrainTimeout", err)
	}
	select {
	case <-r.Done():
		t.Fatal("Done closed while an executor is stuck in Handle")
	case <-time.After(20 * time.Millisecond):
	}
	close(h.block)
	select {
	case <-r.Done():
	case <-time.After(time.Minute):
		t.Fatal("Done not closed after the stuck executor returned")
	}
}
