// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The benchmark's host speed probe. The emulated guest runs as fast as
// the host's cores let qemu run, and this host may itself be a virtual
// machine whose cores its own host shares: a run in which every process
// of the guest spends three times the CPU per command may be the guest
// doing more work or the host's cores running slower. The probe tells
// them apart. Every probeEvery it runs a fixed loop on a locked thread and
// divides the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: only time this
// thread was on a core, so qemu keeping the cores busy does not count)
// by the loop's iterations. Time the core was running this thread by the
// guest kernel's account but not by the host's (stolen by a hypervisor
// beneath) counts, and that is what it is for: the loop's cost per
// iteration grows when the cores are slower. About 1 ms of CPU every
// probeEvery.

const (
	probeEvery = 250 * time.Millisecond
	probeIters = 1 << 19
)

// probeSample is the loop's cost per iteration, in ns of thread CPU time,
// measured at wall-clock time at (Unix seconds).
type probeSample struct {
	at, ns float64
}

// hostProbe runs the probe loop until stop.
type hostProbe struct {
	done    chan struct{}
	wg      sync.WaitGroup
	samples []probeSample // written by the probe goroutine until done
}

// startHostProbe starts the probe.
func startHostProbe() *hostProbe {
	p := &hostProbe{done: make(chan struct{})}
	p.wg.Go(p.run)
	return p
}

// stop ends the probe and returns its samples.
func (p *hostProbe) stop() []probeSample {
	close(p.done)
	p.wg.Wait()
	return p.samples
}

func (p *hostProbe) run() {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		if ns, ok := probeLoop(); ok {
			p.samples = append(p.samples, probeSample{at: float64(time.Now().UnixNano()) / 1e9, ns: ns})
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// probeSink keeps the loop's result alive.
var probeSink uint64

// probeLoop runs probeIters steps of xorshift64 and returns the thread
// CPU time per step. The goroutine stays on one thread meanwhile: read on
// two threads, CLOCK_THREAD_CPUTIME_ID gave a negative cost.
func probeLoop() (float64, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var a, b unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &a) != nil {
		return 0, false
	}
	x := uint64(88172645463325252)
	for range probeIters {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	probeSink += x
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &b) != nil {
		return 0, false
	}
	return float64(b.Nano()-a.Nano()) / probeIters, true
}

// probeMedian is the median cost per iteration of the samples taken in
// [from, to] (Unix seconds), and how many there were.
func probeMedian(s []probeSample, from, to float64) (float64, int) {
	var v []float64
	for _, x := range s {
		if x.at >= from && x.at <= to {
			v = append(v, x.ns)
		}
	}
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], len(v)
}

func TestProbeMedian(t *testing.T) {
	s := []probeSample{{10, 2}, {11, 6}, {12, 4}, {20, 100}}
	if m, n := probeMedian(s, 10, 12); m != 4 || n != 3 {
		t.Errorf("probeMedian over [10, 12] = %v, %d; want 4, 3", m, n)
	}
	if m, n := probeMedian(s, 13, 19); m != 0 || n != 0 {
		t.Errorf("probeMedian over an empty window = %v, %d; want 0, 0", m, n)
	}
	if ns, ok := probeLoop(); !ok || ns <= 0 {
		t.Errorf("probeLoop = %v, %v; want a positive cost", ns, ok)
	}
}

// TestReadSampleCounters: the sampler's wall clock and interrupt lines
// reach the report's window and IPIs/IO.
func TestReadSampleCounters(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("t.j.pre", "cpu  100 0 100 800 0 0 0 0 0 0\nuptime 10.00\nwall 1796498894\nirq LOC 1000\nirq RES 100\nirq CAL 10\nirq TLB 0\n")
	write("t.j.post", "cpu  200 0 200 1600 0 0 0 0 0 0\nuptime 20.00\nwall 1796498904\nirq LOC 2000\nirq RES 1100\nirq CAL 510\nirq TLB 500\n")
	write("t.j.json", `{"jobs":[{"read":{"iops":100,"bw_bytes":409600,"total_ios":1000,"clat_ns":{"percentile":{"50.000000":1000,"99.000000":2000}}}}]}`)
	r, err := readOne(dir, "t", "j", "-")
	if err != nil {
		t.Fatal(err)
	}
	// 1000 I/Os in the 10 s window: 1000+500+500 interrupts, 500 of
	// them shootdowns.
	if !r.IPIsSampled || r.IPIsPerIO != 2 || r.TLBPerIO != 0.5 {
		t.Errorf("IPIs/IO %v (TLB %v, sampled %v), want 2 (0.5, true)", r.IPIsPerIO, r.TLBPerIO, r.IPIsSampled)
	}
	if r.wall != [2]float64{1796498894, 1796498904} {
		t.Errorf("window %v, want [1796498894 1796498904]", r.wall)
	}
}
