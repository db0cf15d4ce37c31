// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/lunbridge/lunbridge/scsi"
)

// TestLostOwnerFencesAndGivesUp: the owner's file system client lost the
// backing file (the LUN's I/O answered ENOTCONN, ESTALE, ...). From the
// moment Lost returns, the owner acknowledges nothing and reports
// unavailable (02/04/0C, the sense Lost returns); its next poll drains
// and gives the lock up, so that the other gateway takes over; it never
// competes again, and its report of the other groups no longer names
// itself as the owner.
func TestLostOwnerFencesAndGivesUp(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOTCONN, syscall.ECONNABORTED, syscall.ESTALE} {
		t.Run(errno.Error(), func(t *testing.T) {
			path := sidecar(t)
			var drained int
			a, clkA := manualGateway(t, path, memberA, memberB, func(context.Context) error {
				drained++
				return fmt.Errorf("sync: %w", errno)
			})
			b, clkB := manualGateway(t, path, memberB, memberA, nil)
			becomeOwner(t, a, clkA)

			se := a.Lost(fmt.Errorf("pwritev: %w", errno))
			if !errors.Is(se, scsi.ErrALUAUnavailable) {
				t.Fatalf("Lost = %v, want %v", se, scsi.ErrALUAUnavailable)
			}
			// Before any poll: nothing is acknowledged or read.
			if err := a.CheckWrite(); !errors.Is(err, scsi.ErrALUAUnavailable) {
				t.Errorf("CheckWrite after Lost = %v, want %v", err, scsi.ErrALUAUnavailable)
			}
			if err := a.CheckRead(); err == nil {
				t.Error("CheckRead after Lost = nil, want an error")
			}
			for _, g := range a.PortGroups() {
				want := scsi.StateUnavailable
				if g.ID != memberA.Group {
					want = scsi.StateTransitioning
				}
				if g.State != want || g.Preferred {
					t.Errorf("port group %d after Lost: %v preferred=%v, want %v, not preferred", g.ID, g.State, g.Preferred, want)
				}
			}

			// A's next poll gives the lock up; B takes over.
			a.tick(context.Background())
			if a.held || drained != 1 {
				t.Fatalf("after a poll: held %v, drained %d times; want the lock given up after one drain", a.held, drained)
			}
			becomeOwner(t, b, clkB)
			if s := b.Status(); s.Epoch != 2 {
				t.Errorf("B.Status() = %+v, want epoch 2", s)
			}
			// A stays out for good, even with the lock free again.
			b.unlock()
			for range 5 {
				clkA.Advance(testHoldDown)
				a.tick(context.Background())
			}
			if a.held {
				t.Error("the lost gateway took the lock again")
			}
			if s := a.Status(); s.State != scsi.StateUnavailable || s.Owner || s.Fenced != 1 {
				t.Errorf("A.Status() = %+v, want unavailable, not the owner, fenced once", s)
			}
		})
	}
}

// TestSidecarErrorsFence: a read of the sidecar that fails with an error
// of a lost file fences the gateway as Lost does; one that fails with EIO
// ends its validity at once (no waiting for it to run out) until a read
// succeeds again.
func TestSidecarErrorsFence(t *testing.T) {
	path := sidecar(t)
	a, clk := manualGateway(t, path, memberA, memberB, nil)
	becomeOwner(t, a, clk)
	ctx := context.Background()

	eio := error(syscall.EIO)
	a.failWith.Store(&eio)
	clk.Advance(testPoll)
	a.tick(ctx)
	if err := a.CheckWrite(); !errors.Is(err, scsi.ErrALUATransitioning) {
		t.Errorf("CheckWrite after a read with EIO = %v, want %v at once", err, scsi.ErrALUATransitioning)
	}
	a.failWith.Store(nil)
	clk.Advance(testPoll)
	a.tick(ctx)
	if err := a.CheckWrite(); err != nil {
		t.Errorf("CheckWrite after a good read = %v, want nil", err)
	}

	gone := error(syscall.ENOTCONN)
	a.failWith.Store(&gone)
	clk.Advance(testPoll)
	a.tick(ctx)
	if err := a.CheckWrite(); !errors.Is(err, scsi.ErrALUAUnavailable) {
		t.Errorf("CheckWrite after a read with ENOTCONN = %v, want %v", err, scsi.ErrALUAUnavailable)
	}
	a.failWith.Store(nil)
	clk.Advance(testPoll)
	a.tick(ctx)
	if a.held || a.State() != scsi.StateUnavailable {
		t.Errorf("after the loss and a poll: held %v, state %v; want the lock given up, unavailable", a.held, a.State())
	}
}

// TestLostGatewayRunEnds: Run of a lost gateway returns an error saying
// so, for the daemon's exit status.
func TestLostGatewayRunEnds(t *testing.T) {
	g := startGateway(t, sidecar(t), memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(g))
	g.Lost(syscall.ENOTCONN)
	waitFor(t, "A to give the lock up", func() bool { return g.Status().Fenced == 1 })
	g.cancel()
	g.cancel = nil
	if err := <-g.done; !errors.Is(err, errLost) {
		t.Errorf("Run = %v, want %v", err, errLost)
	}
}
