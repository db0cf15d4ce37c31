// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunbridge/lunbridge/tcmu"
)

// Kind classifies a SCSI command for statistics.
type Kind uint8

// The kinds of command counted separately.
const (
	KindRead Kind = iota
	KindWrite
	KindSync
	KindUnmap
	KindWriteSame
	KindCompareAndWrite
	KindOther
	NumKinds = int(KindOther) + 1
)

var kindNames = [NumKinds]string{"read", "write", "sync", "unmap", "write_same", "compare_and_write", "other"}

// String returns the kind's name as used in stats files ("read", "write_same", ...).
func (k Kind) String() string {
	if int(k) < NumKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Latency histogram layout: log-scale buckets with histSub sub-buckets per
// power of two, from 1µs (2^10 ns) to 2^histMaxShift ns (~68 s). Bucket 0
// holds everything below 1µs; the last bucket holds everything above the
// range.
const (
	histMinShift = 10 // 1.024µs
	histMaxShift = 36 // 68.7s
	histSubBits  = 2
	histSub      = 1 << histSubBits
	// NumBuckets is the number of buckets in a Histogram.
	NumBuckets = (histMaxShift-histMinShift)*histSub + 2
)

// Histogram is a snapshot of a latency histogram: Histogram[i] counts the
// operations whose latency was below BucketBound(i) and at or above
// BucketBound(i-1).
type Histogram [NumBuckets]uint64

// bucketOf returns the bucket index for a latency of d.
func bucketOf(d time.Duration) int {
	ns := uint64(d)
	if ns < 1<<histMinShift {
		return 0
	}
	if ns >= 1<<histMaxShift {
		return NumBuckets - 1
	}
	shift := bits.Len64(ns) - 1 // 2^shift <= ns < 2^(shift+1)
	sub := int(ns>>(uint(shift)-histSubBits)) & (histSub - 1)
	return 1 + (shift-histMinShift)*histSub + sub
}

// BucketBound returns the exclusive upper bound of bucket i. The last bucket
// has no upper bound and reports the largest Duration.
func BucketBound(i int) time.Duration {
	switch {
	case i <= 0:
		return 1 << histMinShift
	case i >= NumBuckets-1:
		return time.Duration(1<<63 - 1)
	}
	i--
	shift := histMinShift + i/histSub
	sub := uint64(i%histSub) + 1
	return time.Duration((1 << uint(shift)) + sub<<(uint(shift)-histSubBits))
}

// Count returns the number of observations in h.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket that holds the q-quantile
// (0 < q <= 1) of the observations, so the true value is at most the result
// and, above 1µs, more than 84% of it. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h {
		seen += c
		if seen >= rank {
			return BucketBound(i)
		}
	}
	return BucketBound(NumBuckets - 1)
}

// KindStats is a snapshot of the counters of one kind of command.
type KindStats struct {
	Ops     uint64    // commands completed
	Bytes   uint64    // data bytes moved (read or written)
	Errors  uint64    // commands completed with CHECK CONDITION
	Latency Histogram // time from ring intake to completion
	// LatencySum is the sum of every latency counted in Latency, exact
	// (the histogram's buckets only bound each one): a Prometheus
	// histogram's _sum series, and so rate(_sum)/rate(_count), the mean.
	LatencySum time.Duration
}

// Stats is a snapshot of a LUN's counters, taken by LUN.Stats.
type Stats struct {
	Kinds [NumKinds]KindStats
	// SenseKeyErrors counts CHECK CONDITION completions by sense key.
	SenseKeyErrors [16]uint64
	InFlight       uint64 // commands received and not yet completed
	InFlightMax    uint64 // high-water mark of InFlight since the last reset
	// NowaitReads are the READs served inline from the page cache
	// (RWF_NOWAIT) on a page-cache file system; NowaitFallbacks those
	// tried so that would have blocked, and went to a worker.
	NowaitReads, NowaitFallbacks uint64
	// RingKicks, RingWakeups and RingHandoffs are the LUN's TCMU ring's
	// (tcmu.RingStats): the kicks that handed completions to the kernel
	// (a system call each: total_ops / ring_kicks is how many commands
	// share one), the kernel's signals the ring woke for, and the times
	// an executor woke another for queued commands. Summed over the
	// rings the LUN has served since the last reset.
	RingKicks, RingWakeups, RingHandoffs uint64
	Uptime                               time.Duration
}

// Total returns the sum of the operation counts of all kinds.
func (s *Stats) Total() (ops, bytes, errors uint64) {
	for i := range s.Kinds {
		ops += s.Kinds[i].Ops
		bytes += s.Kinds[i].Bytes
		errors += s.Kinds[i].Errors
	}
	return ops, bytes, errors
}

// counters are the live, lock-free counters behind Stats.
type counters struct {
	kinds [NumKinds]struct {
		ops, bytes, errors atomic.Uint64
		latencySum         atomic.Int64 // nanoseconds
		latency            [NumBuckets]atomic.Uint64
	}
	senseKeys   [16]atomic.Uint64
	inFlight    atomic.Int64
	inFlightMax atomic.Uint64
	// nowaitHits and nowaitMisses back NowaitReads and NowaitFallbacks.
	nowaitHits, nowaitMisses atomic.Uint64
	// ring backs RingKicks, RingWakeups and RingHandoffs.
	ring ringCounters
}

// ringCounters sums the counters of the rings a LUN serves: those that
// stopped (past) and the one serving now (live), less their sum at the
// last reset (zero).
type ringCounters struct {
	mu         sync.Mutex
	live       *tcmu.Ring
	past, zero [3]uint64
}

func ringValues(r *tcmu.Ring) [3]uint64 {
	if r == nil {
		return [3]uint64{}
	}
	st := r.Stats()
	return [3]uint64{st.Kicks, st.Wakeups, st.Handoffs}
}

// serve makes r the live ring; serve(nil) adds the live one's counters to
// past.
func (rc *ringCounters) serve(r *tcmu.Ring) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	v := ringValues(rc.live)
	for i := range v {
		rc.past[i] += v[i]
	}
	rc.live = r
}

// total returns past and live since the last reset; with reset, the
// total becomes the new zero.
func (rc *ringCounters) total(reset bool) [3]uint64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	v := ringValues(rc.live)
	for i := range v {
		v[i] += rc.past[i]
		if reset {
			rc.zero[i] = v[i]
		}
		v[i] -= min(rc.zero[i], v[i])
	}
	return v
}

// begin records a command entering the LUN.
func (c *counters) begin() {
	n := uint64(c.inFlight.Add(1))
	for {
		m := c.inFlightMax.Load()
		if n <= m || c.inFlightMax.CompareAndSwap(m, n) {
			return
		}
	}
}

// end records a command's completion. senseKey is meaningful only when
// failed is true.
func (c *counters) end(k Kind, bytes uint64, lat time.Duration, failed bool, senseKey uint8) {
	c.inFlight.Add(-1)
	ks := &c.kinds[k]
	ks.ops.Add(1)
	ks.bytes.Add(bytes)
	ks.latency[bucketOf(lat)].Add(1)
	ks.latencySum.Add(int64(lat))
	if failed {
		ks.errors.Add(1)
		c.senseKeys[senseKey&0xf].Add(1)
	}
}

// snapshot copies the counters into s (Uptime is left to the caller).
func (c *counters) snapshot(s *Stats) {
	for i := range c.kinds {
		ks := &c.kinds[i]
		s.Kinds[i].Ops = ks.ops.Load()
		s.Kinds[i].Bytes = ks.bytes.Load()
		s.Kinds[i].Errors = ks.errors.Load()
		s.Kinds[i].LatencySum = time.Duration(ks.latencySum.Load())
		for b := range ks.latency {
			s.Kinds[i].Latency[b] = ks.latency[b].Load()
		}
	}
	for i := range c.senseKeys {
		s.SenseKeyErrors[i] = c.senseKeys[i].Load()
	}
	if n := c.inFlight.Load(); n > 0 {
		s.InFlight = uint64(n)
	}
	s.InFlightMax = c.inFlightMax.Load()
	s.NowaitReads = c.nowaitHits.Load()
	s.NowaitFallbacks = c.nowaitMisses.Load()
	v := c.ring.total(false)
	s.RingKicks, s.RingWakeups, s.RingHandoffs = v[0], v[1], v[2]
}

// reset zeroes every counter except InFlight, and sets the high-water mark
// to the current InFlight.
func (c *counters) reset() {
	for i := range c.kinds {
		ks := &c.kinds[i]
		ks.ops.Store(0)
		ks.bytes.Store(0)
		ks.errors.Store(0)
		ks.latencySum.Store(0)
		for b := range ks.latency {
			ks.latency[b].Store(0)
		}
	}
	for i := range c.senseKeys {
		c.senseKeys[i].Store(0)
	}
	c.nowaitHits.Store(0)
	c.nowaitMisses.Store(0)
	c.ring.total(true)
	n := c.inFlight.Load()
	if n < 0 {
		n = 0
	}
	c.inFlightMax.Store(uint64(n))
}
