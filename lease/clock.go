// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is a Lease's time base. Validity is measured with Now, which must
// not stand still while the rest of the world moves on: the default is
// CLOCK_BOOTTIME, which also counts a suspend of the host, unlike Go's
// monotonic clock (CLOCK_MONOTONIC). Wall is compared against Now to see
// pauses that no clock of this machine counts: a virtual machine that
// was stopped keeps its clocks still, and only the wall clock is stepped
// afterwards (by NTP, chrony or the hypervisor's clock source).
type Clock interface {
	// Now is the time since some fixed origin, advancing across
	// suspends.
	Now() time.Duration
	// Wall is the wall-clock time (CLOCK_REALTIME) since the epoch.
	Wall() time.Duration
}

// bootClock is the default Clock.
type bootClock struct{}

func (bootClock) Now() time.Duration  { return clockGet(unix.CLOCK_BOOTTIME) }
func (bootClock) Wall() time.Duration { return clockGet(unix.CLOCK_REALTIME) }

func clockGet(id int32) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		// Both clocks exist on every kernel Go supports.
		panic("lease: clock_gettime: " + err.Error())
	}
	return time.Duration(ts.Nano())
}

// ManualClock is a Clock that moves only when told, for tests in this
// and other packages (a paused virtual machine, a stepped wall clock).
type ManualClock struct {
	mu        sync.Mutex
	now, wall time.Duration // protected by mu
}

// NewManualClock returns a ManualClock at time 1 s (wall clock: 1 h).
func NewManualClock() *ManualClock { return &ManualClock{now: time.Second, wall: time.Hour} }

// Now implements Clock.
func (c *ManualClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Wall implements Clock.
func (c *ManualClock) Wall() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// Advance moves both clocks by d: time passing normally.
func (c *ManualClock) Advance(d time.Duration) { c.Step(d, d) }

// Step moves Now by now and Wall by wall: Step(0, time.Minute) is a
// virtual machine paused for a minute whose wall clock was then set
// right.
func (c *ManualClock) Step(now, wall time.Duration) {
	c.mu.Lock()
	c.now += now
	c.wall += wall
	c.mu.Unlock()
}
