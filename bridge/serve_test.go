// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/scsi"
	"github.com/lunbridge/lunbridge/tcmu"
)

// gateBackend is nullBackend whose reads each wait for a token on release,
// after announcing themselves on entered.
type gateBackend struct {
	nullBackend
	entered chan struct{}
	release chan struct{}
}

func (g gateBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.nullBackend.ReadAt(bufs, off)
}

// gateNowaitBackend is gateBackend whose nowait reads block too: a file
// system that says it would not wait, and does.
type gateNowaitBackend struct{ gateBackend }

func (g gateNowaitBackend) ReadAtNowait(bufs [][]byte, off int64) (int, error) {
	return g.ReadAt(bufs, off)
}

// TestServeInlineBlocked runs a READ that the LUN takes for a memory read
// on a backend that blocks, with Execute (inlineAll) and with TryRead
// (inlineNowait): once the ring's watchdog has another executor wait for
// the kernel, commands the disk answers from memory and TMRs still flow,
// and everything completes when the read returns.
func TestServeInlineBlocked(t *testing.T) {
	for _, mode := range []inlineMode{inlineAll, inlineNowait} {
		name := map[inlineMode]string{inlineAll: "all", inlineNowait: "nowait"}[mode]
		t.Run(name, func(t *testing.T) { testServeInlineBlocked(t, mode) })
	}
}

func testServeInlineBlocked(t *testing.T, mode inlineMode) {
	g := gateBackend{entered: make(chan struct{}, 16), release: make(chan struct{}, 16)}
	var be scsi.Backend = g
	if mode == inlineNowait {
		be = gateNowaitBackend{g}
	}
	l := newBackendLUN(t, 2, be)
	l.inline = mode
	l.stalledAfter = 10 * time.Millisecond
	s := serveFakeOpts(t, l, 8, tcmu.RingOptions{InlineBound: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.k.Submit(ctx, read10(0, 8), nil, 4096); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	deadline := time.Now().Add(time.Minute)
	for s.ring.Stats().Handovers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no handover a minute after the inline READ blocked")
		}
		time.Sleep(time.Millisecond)
	}
	if _, stuck := l.srv.stalled(); !stuck {
		t.Error("the stall detector does not see the blocked inline command")
	}
	for _, cdb := range [][]byte{make([]byte, 6), {0x12, 0, 0, 0, 36, 0}} {
		resp, _, err := s.k.Do(ctx, cdb, nil, 36*int(cdb[4]/36))
		if err != nil || resp.Status != statusGood {
			t.Fatalf("%#x while an inline READ is blocked: %+v, %v", cdb[0], resp, err)
		}
	}
	if err := s.k.SubmitTMR(ctx, uint8(tcmu.TMRAbortTask), []uint16{0}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Minute)
	for s.ring.Stats().TMRs == 0 {
		if time.Now().After(deadline) {
			t.Fatal("TMR not taken while an inline READ is blocked")
		}
		time.Sleep(time.Millisecond)
	}
	g.release <- struct{}{}
	if err := s.k.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	st := l.Stats()
	if st.InFlight != 0 {
		t.Errorf("%d commands in flight after stop", st.InFlight)
	}
	if mode == inlineNowait && st.NowaitReads == 0 {
		t.Error("the blocked READ did not run through TryRead")
	}
}

// TestServeBlockedSlots queues many commands that may block while the one
// blocking slot (one worker) is held by a stuck READ: the others wait for
// the slot without holding an executor, so the executor that is never
// blocked still takes a later TMR, and every command completes once the
// backend is released.
func TestServeBlockedSlots(t *testing.T) {
	const n = 300
	g := gateBackend{entered: make(chan struct{}, 2*n), release: make(chan struct{}, 2*n)}
	l := newBackendLUN(t, 1, g)
	l.inline = inlineOff
	s := serveFake(t, l, 8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		if _, err := s.k.Submit(ctx, read10(uint32(i), 1), nil, 512); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.k.SubmitTMR(ctx, uint8(tcmu.TMRAbortTask), []uint16{0}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for s.ring.Stats().TMRs == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("TMR not taken with %d commands queued on one stuck worker", n)
		}
		time.Sleep(time.Millisecond)
	}
	for range n {
		g.release <- struct{}{}
	}
	if err := s.k.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	if got := s.k.Completed(); got != n {
		t.Errorf("kernel completed %d commands, want %d", got, n)
	}
}
