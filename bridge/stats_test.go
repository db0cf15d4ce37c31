// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"testing"
	"time"
)

// TestLatencySum: the snapshot's LatencySum is the exact sum of the
// latencies recorded, per kind, and reset zeroes it.
func TestLatencySum(t *testing.T) {
	var c counters
	for _, d := range []time.Duration{1500 * time.Nanosecond, 700 * time.Microsecond, 2 * time.Second} {
		c.begin()
		c.end(KindRead, 4096, d, false, 0)
	}
	c.begin()
	c.end(KindWrite, 512, time.Millisecond, true, 3)
	var s Stats
	c.snapshot(&s)
	if got, want := s.Kinds[KindRead].LatencySum, 2*time.Second+700*time.Microsecond+1500*time.Nanosecond; got != want {
		t.Errorf("read LatencySum = %v, want %v", got, want)
	}
	if got, want := s.Kinds[KindWrite].LatencySum, time.Millisecond; got != want {
		t.Errorf("write LatencySum = %v, want %v", got, want)
	}
	if got := s.Kinds[KindRead].Latency.Count(); got != 3 {
		t.Errorf("read Latency.Count() = %d, want 3", got)
	}
	c.reset()
	c.snapshot(&s)
	if got := s.Kinds[KindRead].LatencySum; got != 0 {
		t.Errorf("LatencySum after reset = %v, want 0", got)
	}
}
