// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/scsi"
)

// The tests below drive two Leases of one sidecar by hand: each call of
// tick is one poll, and each gateway's ManualClock moves only when the
// test says. The OFD locks and the sidecar are real.

// manualGateway opens a Lease on path with its own ManualClock. Run is
// never called; the test calls tick.
func manualGateway(t *testing.T, path string, self, peer Member, drain func(context.Context) error) (*Lease, *ManualClock) {
	t.Helper()
	clk := NewManualClock()
	l, err := Open(Config{
		Path: path, Self: self, Peers: []Member{peer},
		Validity: testValidity, Poll: testPoll, HoldDown: testHoldDown,
		DrainTimeout: 50 * time.Millisecond,
		Drain:        drain,
		Clock:        clk,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		l.drains.Wait()
		l.Close()
	})
	return l, clk
}

// becomeOwner ticks l until it serves as owner: acquire, then wait out
// the takeover delay.
func becomeOwner(t *testing.T, l *Lease, clk *ManualClock) {
	t.Helper()
	ctx := context.Background()
	l.tick(ctx)
	if !l.held {
		t.Fatal("gateway did not take the lock")
	}
	for i := 0; i < 100 && l.CheckWrite() != nil; i++ {
		clk.Advance(testPoll)
		l.tick(ctx)
	}
	if err := l.CheckWrite(); err != nil {
		t.Fatalf("CheckWrite after the takeover delay = %v, want nil", err)
	}
}

// sidecarOwner reads the owner record of the sidecar at path.
func sidecarOwner(t *testing.T, path string) record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decode(b[ownerOff:], ownerMagic)
	if err != nil {
		t.Fatalf("owner record: %v", err)
	}
	return r
}

// Hole 1: the owner's machine is paused past the validity; its clocks
// stand still, the file system drops its lock, and another gateway takes
// over. On resume, the old owner's clock says 0.1 s have passed: it must
// not acknowledge a single write, even before its Run polls again.
func TestPausedOwnerStopsAcknowledging(t *testing.T) {
	path := sidecar(t)
	a, clkA := manualGateway(t, path, memberA, memberB, nil)
	b, clkB := manualGateway(t, path, memberB, memberA, nil)
	becomeOwner(t, a, clkA)

	// A is paused: its lock goes (the file system's client session
	// expired), B takes over and waits out its delay.
	a.unlock()
	becomeOwner(t, b, clkB)

	// A resumes: its boot clock moved 10 ms (well within its validity),
	// its wall clock (set right by NTP) a minute.
	clkA.Step(10*time.Millisecond, time.Minute)
	if err := a.CheckWrite(); !errors.Is(err, scsi.ErrALUATransitioning) {
		t.Fatalf("resumed owner: CheckWrite = %v, want %v (B owns the LUN)", err, scsi.ErrALUATransitioning)
	}
	a.tick(context.Background())
	if err := a.CheckWrite(); err == nil {
		t.Fatal("resumed owner: CheckWrite after a poll = nil, want an error")
	}
	if a.fenced.Load() != 1 {
		t.Errorf("resumed owner: fenced %d times, want 1", a.fenced.Load())
	}
	if err := b.CheckWrite(); err != nil {
		t.Errorf("new owner: CheckWrite = %v, want nil", err)
	}
}

// A wall-clock step the other way (a pause noticed late, or an operator
// setting the clock back) also ends the validity until the next read.
func TestWallClockStepEndsValidityUntilRead(t *testing.T) {
	path := sidecar(t)
	a, clk := manualGateway(t, path, memberA, memberB, nil)
	becomeOwner(t, a, clk)
	clk.Step(0, -time.Minute)
	if err := a.CheckWrite(); err == nil {
		t.Fatal("CheckWrite after a wall-clock step = nil, want an error")
	}
	a.tick(context.Background()) // a read that started after the step
	if err := a.CheckWrite(); err != nil {
		t.Fatalf("CheckWrite after a clean read = %v, want nil", err)
	}
}

// Hole 5: a gateway that lost its lock and epoch without noticing
// releases the LUN; it must not overwrite the new owner's record (the new
// owner would fence itself).
func TestReleaseKeepsNewerOwnersRecord(t *testing.T) {
	path := sidecar(t)
	a, clkA := manualGateway(t, path, memberA, memberB, nil)
	b, clkB := manualGateway(t, path, memberB, memberA, nil)
	becomeOwner(t, a, clkA)
	a.unlock()
	becomeOwner(t, b, clkB)
	want := sidecarOwner(t, path)

	if err := a.release(context.Background()); err != nil {
		t.Fatalf("release = %v", err)
	}
	if got := sidecarOwner(t, path); got != want {
		t.Fatalf("owner record after the stale release = %+v, want %+v", got, want)
	}
	clkB.Advance(testPoll)
	b.tick(context.Background())
	if err := b.CheckWrite(); err != nil {
		t.Fatalf("new owner after the stale release: CheckWrite = %v, want nil", err)
	}
}

// handover has the standby ask and the owner answer once HoldDown passed.
func handover(t *testing.T, a, b *Lease, clkA *ManualClock) {
	t.Helper()
	b.Refused()
	b.tick(context.Background())
	clkA.Advance(testHoldDown)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.tick(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the owner's poll still hangs in the handover after 10 s")
	}
}

// Hole 3: a write stuck in the owner's file system client (a hung FUSE
// request) makes the drain hang. The handover must end anyway: the owner
// fences itself and releases the lock, and the standby takes over.
func TestStuckDrainFencesAndReleases(t *testing.T) {
	path := sidecar(t)
	stuck := make(chan struct{})
	defer close(stuck) // the stuck write returns at last
	a, clkA := manualGateway(t, path, memberA, memberB, func(context.Context) error {
		<-stuck // ignores its context, like a write in a hung client
		return nil
	})
	b, clkB := manualGateway(t, path, memberB, memberA, nil)
	becomeOwner(t, a, clkA)
	handover(t, a, b, clkA)

	if err := a.CheckWrite(); err == nil {
		t.Fatal("owner after a stuck drain: CheckWrite = nil, want an error")
	}
	if a.held {
		t.Fatal("owner after a stuck drain still holds the lock")
	}
	becomeOwner(t, b, clkB)
	clkA.Advance(testPoll)
	a.tick(context.Background())
	if err := a.CheckWrite(); err == nil {
		t.Fatal("old owner: CheckWrite = nil after the standby took over")
	}
}

// Hole 2 (the lease's part): a drain whose sync fails must not hand the
// LUN over, or the other gateway serves a file without acknowledged
// writes; the LUN is unavailable instead.
func TestFailedDrainSyncMakesUnavailable(t *testing.T) {
	path := sidecar(t)
	a, clkA := manualGateway(t, path, memberA, memberB, func(context.Context) error {
		return errors.New("fdatasync: input/output error")
	})
	b, clkB := manualGateway(t, path, memberB, memberA, nil)
	becomeOwner(t, a, clkA)
	before := sidecarOwner(t, path)
	handover(t, a, b, clkA)

	if got := a.State(); got != scsi.StateUnavailable {
		t.Errorf("owner after a failed drain: State = %v, want %v", got, scsi.StateUnavailable)
	}
	if err := a.CheckWrite(); !errors.Is(err, scsi.ErrALUAUnavailable) {
		t.Errorf("owner after a failed drain: CheckWrite = %v, want %v", err, scsi.ErrALUAUnavailable)
	}
	if got := sidecarOwner(t, path); got != before {
		t.Errorf("owner record after a failed drain = %+v, want %+v", got, before)
	}
	clkB.Advance(testHoldDown)
	b.tick(context.Background())
	if b.held {
		t.Error("the standby took the lock after the owner's drain failed")
	}
}

// Hole 4 (the lease's part): the LUN drops its cache before ownership is
// visible to commands, and a failure to drop it keeps the gateway out of
// active/optimized.
func TestOnChangeRunsBeforeOwnershipIsVisible(t *testing.T) {
	path := sidecar(t)
	a, clk := manualGateway(t, path, memberA, memberB, nil)
	var calls int
	var visible []error
	a.cfg.OnChange = func(s scsi.AccessState) error {
		if s != scsi.StateActiveOptimized {
			return nil
		}
		calls++
		visible = append(visible, a.CheckWrite())
		if calls == 1 {
			return errors.New("pages stay cached")
		}
		return nil
	}
	ctx := context.Background()
	a.tick(ctx)
	for i := 0; i < 100 && calls == 0; i++ {
		clk.Advance(testPoll)
		a.tick(ctx)
	}
	if calls != 1 {
		t.Fatalf("OnChange(active/optimized) called %d times, want 1", calls)
	}
	if err := a.CheckWrite(); err == nil {
		t.Fatal("CheckWrite after OnChange failed = nil, want an error")
	}
	clk.Advance(testPoll)
	a.tick(ctx)
	if err := a.CheckWrite(); err != nil {
		t.Fatalf("CheckWrite after OnChange succeeded = %v, want nil", err)
	}
	for i, err := range visible {
		if err == nil {
			t.Errorf("OnChange call %d: the gateway already acknowledged writes", i+1)
		}
	}
}
