// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"sync"
	"testing"

	"github.com/lunbridge/lunbridge/internal/fakering"
)

// workerHandler hands commands to a worker goroutine that completes them at
// once: a null backend.
type workerHandler struct {
	r    *Ring
	work chan *Cmd
}

func (h *workerHandler) setRing(r *Ring)     { h.r = r }
func (h *workerHandler) Handle(c *Cmd)       { h.work <- c }
func (h *workerHandler) TMR(TMRType, []*Cmd) {}

func (h *workerHandler) run() {
	for c := range h.work {
		h.r.Complete(c, Response{})
	}
}

// BenchmarkRing measures commands through the fake kernel, the ring and a
// null backend; each op is one command submitted and completed.
//
//	go test -run '^$' -bench BenchmarkRing -benchmem ./tcmu/
func BenchmarkRing(b *testing.B) {
	benches := []struct {
		name  string
		cdb   []byte
		out   []byte
		inLen int
	}{
		{"TUR", testUnitReady, nil, 0},
		{"READ-4K", read10(0, 8), nil, 4096},
		{"WRITE-4K", write10(0, 8), make([]byte, 4096), 0},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			k, err := fakering.NewKernel(fakering.Options{CmdrSize: 1 << 20, DataSize: 16 << 20, NoLog: true})
			if err != nil {
				b.Fatal(err)
			}
			r, err := NewRing(k.Mem(), k.Notifier(), RingOptions{})
			if err != nil {
				b.Fatal(err)
			}
			// The channel holds every command the ring can have in
			// flight, so Handle never blocks.
			h := &workerHandler{r: r, work: make(chan *Cmd, 1<<16)}
			var wg sync.WaitGroup
			wg.Go(h.run)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			wg.Go(func() { errc <- r.Run(ctx, h) })
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := k.Submit(ctx, bb.cdb, bb.out, bb.inLen); err != nil {
					b.Fatal(err)
				}
			}
			if err := k.WaitIdle(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			close(h.work)
			wg.Wait()
			st := r.Stats()
			b.ReportMetric(float64(st.Commands)/float64(st.Batches), "cmds/batch")
			if err := k.Err(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestRingZeroAlloc drives the ring by hand (no goroutines) through many
// laps of a small ring: after warm-up, taking, completing and retiring
// commands allocates nothing, in the ring or in the fake kernel.
func TestRingZeroAlloc(t *testing.T) {
	k := newKernel(t, fakering.Options{CmdrSize: 4096, DataSize: 64 << 10, NoLog: true})
	r, err := NewRing(k.Mem(), k.Notifier(), RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := &deferHandler{r: r}
	read := read10(1, 8)
	step := func() {
		for i := range 8 {
			cdb, inLen := testUnitReady, 0
			if i%2 == 1 {
				cdb, inLen = read, 4096
			}
			if _, err := k.Submit(ctx, cdb, nil, inLen); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.poll(h); err != nil {
			t.Fatal(err)
		}
		// Complete in reverse: out-of-order completion.
		for i := len(h.held) - 1; i >= 0; i-- {
			r.Complete(h.held[i], Response{Status: 2, Sense: h.sense[:], ShortRead: true, ReadLen: 100})
		}
		clear(h.held)
		h.held = h.held[:0]
		if err := r.flush(); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		step()
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("%v allocations per 8 commands, want 0", n)
	}
	if st := r.Stats(); st.InFlight != 0 || st.Pads == 0 {
		t.Errorf("Stats = %+v, want nothing in flight and wrap-around", st)
	}
}

// deferHandler keeps the commands of one poll for the test to complete.
type deferHandler struct {
	r     *Ring
	held  []*Cmd
	sense [18]byte
}

func (h *deferHandler) Handle(c *Cmd)       { h.held = append(h.held, c) }
func (h *deferHandler) TMR(TMRType, []*Cmd) {}
