// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/internal/fakering"
)

// newKernel returns a fake kernel, failing the test if the fake ever finds
// the ring broken.
func newKernel(t *testing.T, o fakering.Options) *fakering.Kernel {
	t.Helper()
	k, err := fakering.NewKernel(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Err(); err != nil {
			t.Errorf("fake kernel: %v", err)
		}
	})
	return k
}

// runRing starts Run in a goroutine; stop cancels it and returns Run's
// error. Cleanup stops it if the test did not.
func runRing(t *testing.T, k *fakering.Kernel, opts RingOptions, h Handler) (r *Ring, stop func() error) {
	t.Helper()
	r, err := NewRing(k.Mem(), k.Notifier(), opts)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	if s, ok := h.(interface{ setRing(*Ring) }); ok {
		s.setRing(r)
	}
	if w, ok := h.(interface{ wait() }); ok {
		t.Cleanup(w.wait) // runs after the stop below: joins workers
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx, h) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-errc
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// echoHandler completes every command from a worker goroutine: data-in
// buffers are filled with fill(c) (if non-nil), data-out is recorded.
type echoHandler struct {
	r    *Ring
	fill func(c *Cmd, buf []byte)
	mu   sync.Mutex
	out  map[uint16][]byte // data-out bytes by cmd id; protected by mu
	cdbs [][]byte          // protected by mu
	wg   sync.WaitGroup
}

func (h *echoHandler) setRing(r *Ring) { h.r = r }

func (h *echoHandler) wait() { h.wg.Wait() }

func (h *echoHandler) Handle(c *Cmd) {
	h.wg.Go(func() {
		var data []byte
		for _, b := range c.Data {
			data = append(data, b...)
		}
		if h.fill != nil {
			buf := make([]byte, len(data))
			h.fill(c, buf)
			o := 0
			for _, b := range c.Data {
				o += copy(b, buf[o:])
			}
		}
		h.mu.Lock()
		if h.out == nil {
			h.out = make(map[uint16][]byte)
		}
		h.out[c.ID] = data
		h.cdbs = append(h.cdbs, slices.Clone(c.CDB))
		h.mu.Unlock()
		h.r.Complete(c, Response{Status: 0})
	})
}

func (h *echoHandler) TMR(TMRType, []*Cmd) {}

func read10(lba uint32, blocks uint16) []byte {
	return []byte{0x28, 0, byte(lba >> 24), byte(lba >> 16), byte(lba >> 8), byte(lba), 0, byte(blocks >> 8), byte(blocks), 0}
}

func write10(lba uint32, blocks uint16) []byte {
	c := read10(lba, blocks)
	c[0] = 0x2a
	return c
}

var testUnitReady = []byte{0, 0, 0, 0, 0, 0}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func TestRingSingleCommand(t *testing.T) {
	tests := []struct {
		name  string
		cdb   []byte
		out   []byte
		inLen int
	}{
		{"TEST UNIT READY", testUnitReady, nil, 0},
		{"READ(10) 8 KiB", read10(5, 16), nil, 8192},
		{"READ(10) 1 byte short of a block", read10(0, 1), nil, 4095},
		{"WRITE(10) 12 KiB", write10(9, 24), pattern(12288, 3), 0},
		{"variable-length CDB", append([]byte{0x7f, 0, 0, 0, 0, 0, 0, 24}, make([]byte, 24)...), nil, 0},
		{"16-byte CDB", []byte{0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0}, nil, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(t, fakering.Options{})
			h := &echoHandler{fill: func(c *Cmd, buf []byte) { copy(buf, pattern(len(buf), 1)) }}
			r, stop := runRing(t, k, RingOptions{}, h)
			resp, in, err := k.Do(context.Background(), tt.cdb, tt.out, tt.inLen)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if resp.Status != 0 || resp.UnknownOp {
				t.Errorf("Do: status %#x unknownOp %v, want GOOD", resp.Status, resp.UnknownOp)
			}
			if want := pattern(tt.inLen, 1); tt.inLen > 0 && !bytes.Equal(in, want) {
				t.Errorf("data-in = %d bytes %x..., want %d bytes %x...", len(in), in[:min(8, len(in))], len(want), want[:8])
			}
			if tt.inLen == 0 && in != nil {
				t.Errorf("data-in = %d bytes, want none", len(in))
			}
			h.wg.Wait()
			if err := stop(); err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.cdbs) != 1 || !bytes.Equal(h.cdbs[0], tt.cdb) {
				t.Errorf("handler saw CDBs %x, want [%x]", h.cdbs, tt.cdb)
			}
			if tt.out != nil && !bytes.Equal(h.out[resp.ID], tt.out) {
				t.Errorf("data-out seen by the handler differs from what was written")
			}
			if tt.inLen > 0 && len(h.out[resp.ID]) != tt.inLen {
				t.Errorf("handler saw %d data-in bytes of buffer, want %d", len(h.out[resp.ID]), tt.inLen)
			}
			if st := r.Stats(); st.Commands != 1 || st.Completions != 1 || st.InFlight != 0 {
				t.Errorf("Stats = %+v, want 1 command, 1 completion, 0 in flight", st)
			}
		})
	}
}

// doMany runs n concurrent Do calls (READ(10) of inLen bytes with the
// command index in the LBA) and checks each got GOOD and its own data.
func doMany(t *testing.T, k *fakering.Kernel, n, inLen int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			resp, in, err := k.Do(ctx, read10(uint32(i), 1), nil, inLen)
			switch {
			case err != nil:
				errs <- fmt.Errorf("Do %d: %w", i, err)
			case resp.Status != 0:
				errs <- fmt.Errorf("Do %d: status %#x", i, resp.Status)
			case inLen > 0 && !bytes.Equal(in, lbaPattern(uint32(i), inLen)):
				errs <- fmt.Errorf("Do %d: got another command's data", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// lbaPattern is the data-in the lbaFill handler returns for an LBA.
func lbaPattern(lba uint32, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(lba) ^ byte(i)
	}
	return b
}

func lbaFill(c *Cmd, buf []byte) {
	lba := uint32(c.CDB[2])<<24 | uint32(c.CDB[3])<<16 | uint32(c.CDB[4])<<8 | uint32(c.CDB[5])
	copy(buf, lbaPattern(lba, len(buf)))
}

func TestRingManyCommands(t *testing.T) {
	tests := []struct {
		name string
		opts fakering.Options
		n    int
		in   int
		pads bool // the ring must wrap with PADs
	}{
		{"big ring", fakering.Options{}, 300, 512, false},
		// READ(10) entries are 128 bytes (112 + the CDB rounded up to
		// 16): 1000 bytes hold 7, then a PAD on nearly every lap.
		{"tiny ring wraps", fakering.Options{CmdrSize: 1000, DataSize: 64 << 10}, 500, 100, true},
		// Entries fill a 1 KiB ring exactly: wrap-around without PADs.
		{"ring of whole entries", fakering.Options{CmdrSize: 1024, DataSize: 16 << 10}, 400, 0, false},
		// Data area of 4 blocks: back-pressure on data space.
		{"data area full", fakering.Options{CmdrSize: 8192, DataSize: 4 * 4096}, 200, 5000, false},
		{"in order (no CAP_OOOC)", fakering.Options{CmdrSize: 1000, Flags: fakering.CapReadLen, ExactFlags: true}, 300, 64, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(t, tt.opts)
			h := &echoHandler{fill: lbaFill}
			r, stop := runRing(t, k, RingOptions{}, h)
			doMany(t, k, tt.n, tt.in)
			h.wg.Wait()
			if err := stop(); err != nil {
				t.Errorf("Run = %v", err)
			}
			st := r.Stats()
			if st.Commands != uint64(tt.n) || st.Completions != uint64(tt.n) || st.InFlight != 0 {
				t.Errorf("Stats = %+v, want %d commands and completions", st, tt.n)
			}
			if tt.pads && st.Pads == 0 {
				t.Errorf("Stats.Pads = 0, want wrap-around PADs")
			}
			if got := k.Completed(); got != uint64(tt.n) {
				t.Errorf("kernel completed %d, want %d", got, tt.n)
			}
		})
	}
}

// holdHandler hands every command to the test through a channel.
type holdHandler struct {
	cmds chan *Cmd
	tmrs chan tmrEvent
}

type tmrEvent struct {
	kind TMRType
	ids  []uint16
}

func newHoldHandler() *holdHandler {
	return &holdHandler{cmds: make(chan *Cmd, 1024), tmrs: make(chan tmrEvent, 16)}
}

func (h *holdHandler) Handle(c *Cmd) { h.cmds <- c }

func (h *holdHandler) TMR(kind TMRType, aborted []*Cmd) {
	ev := tmrEvent{kind: kind}
	for _, c := range aborted {
		ev.ids = append(ev.ids, c.ID)
	}
	h.tmrs <- ev
}

// take receives n commands from the handler.
func (h *holdHandler) take(t *testing.T, n int) []*Cmd {
	t.Helper()
	var cmds []*Cmd
	timeout := time.After(time.Minute)
	for len(cmds) < n {
		select {
		case c := <-h.cmds:
			cmds = append(cmds, c)
		case <-timeout:
			t.Fatalf("handler got %d commands, want %d", len(cmds), n)
		}
	}
	return cmds
}

func submit(t *testing.T, k *fakering.Kernel, cdb, out []byte, inLen int) uint16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := k.Submit(ctx, cdb, out, inLen)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return id
}

func waitIdle(t *testing.T, k *fakering.Kernel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v (%d in flight)", err, k.InFlight())
	}
}

// statusFor gives each command a distinct, checkable response.
func statusFor(id uint16) Response {
	if id%3 == 0 {
		return Response{Status: 2, Sense: []byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, byte(id)}}
	}
	return Response{Status: 0}
}

func TestRingOutOfOrder(t *testing.T) {
	const n = 40
	orders := map[string]func([]*Cmd){
		"in order": func([]*Cmd) {},
		"reverse":  func(c []*Cmd) { slices.Reverse(c) },
		"random": func(c []*Cmd) {
			rng := rand.New(rand.NewPCG(1, 2))
			rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		},
	}
	for _, ooo := range []bool{true, false} {
		for name, reorder := range orders {
			t.Run(fmt.Sprintf("%s/OOOC=%v", name, ooo), func(t *testing.T) {
				flags := fakering.AllCaps
				if !ooo {
					flags &^= fakering.CapOOOC
				}
				// 8 KiB ring: the warm-up below moves the head so
				// that the 40 held entries wrap around the end.
				k := newKernel(t, fakering.Options{CmdrSize: 8192, Flags: flags, ExactFlags: true})
				h := newHoldHandler()
				r, stop := runRing(t, k, RingOptions{}, h)
				for range 50 {
					submit(t, k, testUnitReady, nil, 0)
					r.Complete(h.take(t, 1)[0], Response{})
				}
				waitIdle(t, k)
				before := len(k.Completions())

				var ids []uint16
				for i := range n {
					ids = append(ids, submit(t, k, read10(uint32(i), 1), nil, 512))
				}
				// Executors hand commands to the handler in any
				// order: sort them back into submission order.
				byID := map[uint16]*Cmd{}
				for _, c := range h.take(t, n) {
					byID[c.ID] = c
				}
				var cmds []*Cmd
				for i, id := range ids {
					c := byID[id]
					if c == nil {
						t.Fatalf("command %d: id %d never reached the handler", i, id)
					}
					copy(c.Data[0], lbaPattern(uint32(c.ID), 512))
					cmds = append(cmds, c)
				}
				reorder(cmds)
				var completed []uint16
				for _, c := range cmds {
					completed = append(completed, c.ID)
					r.Complete(c, statusFor(c.ID))
				}
				waitIdle(t, k)
				if err := stop(); err != nil {
					t.Errorf("Run = %v", err)
				}
				got := k.Completions()[before:]
				want := completed // OOOC: the kernel sees responses as written
				if !ooo {
					want = ids // in order: slot by slot
				}
				var gotIDs []uint16
				for _, resp := range got {
					gotIDs = append(gotIDs, resp.ID)
					w := statusFor(resp.ID)
					if resp.Status != w.Status {
						t.Errorf("cmd %d: status %#x, want %#x", resp.ID, resp.Status, w.Status)
					}
					if w.Status == 2 && (len(resp.Sense) != 96 || !bytes.Equal(resp.Sense[:len(w.Sense)], w.Sense) ||
						!bytes.Equal(resp.Sense[len(w.Sense):], make([]byte, 96-len(w.Sense)))) {
						t.Errorf("cmd %d: sense %x, want %x + zeros", resp.ID, resp.Sense, w.Sense)
					}
					if w.Status == 0 && !bytes.Equal(resp.Data, lbaPattern(uint32(resp.ID), 512)) {
						t.Errorf("cmd %d: data-in of another command", resp.ID)
					}
				}
				if !slices.Equal(gotIDs, want) {
					t.Errorf("kernel completed ids %v, want %v", gotIDs, want)
				}
				if st := r.Stats(); st.Pads == 0 {
					t.Errorf("no PAD seen: the test meant to wrap around")
				}
			})
		}
	}
}

func TestRingTMR(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newHoldHandler()
	r, stop := runRing(t, k, RingOptions{}, h)
	var ids []uint16
	for i := range 3 {
		ids = append(ids, submit(t, k, read10(uint32(i), 1), nil, 512))
	}
	cmds := h.take(t, 3)
	// Name the second command and an id that is not in flight.
	if err := k.SubmitTMR(context.Background(), uint8(TMRAbortTask), []uint16{ids[1], 999}); err != nil {
		t.Fatal(err)
	}
	var ev tmrEvent
	select {
	case ev = <-h.tmrs:
	case <-time.After(time.Minute):
		t.Fatal("no TMR callback")
	}
	if ev.kind != TMRAbortTask || !slices.Equal(ev.ids, []uint16{ids[1]}) {
		t.Errorf("TMR(%v, %v), want TMR(ABORT_TASK, [%d])", ev.kind, ev.ids, ids[1])
	}
	// Executors hand commands to the handler in any order.
	for _, c := range cmds {
		if got, want := c.Aborted(), c.ID == ids[1]; got != want {
			t.Errorf("cmd %d Aborted() = %v, want %v", c.ID, got, want)
		}
	}
	// An aborted command is still completed; TMR slots are retired.
	for _, c := range slices.Backward(cmds) {
		r.Complete(c, Response{Status: 0})
	}
	waitIdle(t, k)
	// A LUN RESET naming nothing still reaches the handler.
	if err := k.SubmitTMR(context.Background(), uint8(TMRLUNReset), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev = <-h.tmrs:
	case <-time.After(time.Minute):
		t.Fatal("no TMR callback")
	}
	if ev.kind != TMRLUNReset || len(ev.ids) != 0 {
		t.Errorf("TMR(%v, %v), want TMR(LUN_RESET, [])", ev.kind, ev.ids)
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	if st := r.Stats(); st.TMRs != 2 {
		t.Errorf("Stats.TMRs = %d, want 2", st.TMRs)
	}
}

func TestRingRestart(t *testing.T) {
	ctx := context.Background()
	k := newKernel(t, fakering.Options{CmdrSize: 2048})
	var ids []uint16
	for i := range 6 {
		ids = append(ids, submit(t, k, read10(uint32(i), 1), nil, 512))
	}
	// The first daemon sees the queued entries without any new kick,
	// completes the first two in order and dies with four in flight.
	h1 := newHoldHandler()
	r1, err := NewRing(k.Mem(), k.Notifier(), RingOptions{DrainTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(ctx)
	done1 := make(chan error, 1)
	go func() { done1 <- r1.Run(ctx1, h1) }()
	cmds := h1.take(t, 6)
	r1.Complete(cmds[0], Response{})
	r1.Complete(cmds[1], Response{})
	for k.InFlight() != 4 {
		time.Sleep(time.Millisecond)
	}
	cancel1()
	if err := <-done1; !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("first Run = %v, want ErrDrainTimeout", err)
	}

	// The second daemon serves the four left, plus a new one.
	h2 := &echoHandler{fill: lbaFill}
	r2, stop := runRing(t, k, RingOptions{}, h2)
	waitIdle(t, k)
	if resp, in, err := k.Do(ctx, read10(7, 1), nil, 512); err != nil || !bytes.Equal(in, lbaPattern(7, 512)) {
		t.Fatalf("Do after restart = %+v, %v", resp, err)
	}
	h2.wg.Wait()
	if err := stop(); err != nil {
		t.Errorf("second Run = %v", err)
	}
	var got []uint16
	for _, resp := range k.Completions() {
		got = append(got, resp.ID)
	}
	// The second daemon completes out of order (concurrent workers).
	if len(got) != 7 || !slices.Equal(got[:2], ids[:2]) ||
		!slices.Equal(slices.Sorted(slices.Values(got[2:6])), ids[2:]) || got[6] != 1 {
		t.Errorf("kernel completed %v, want %v, then %v in any order, then 1", got, ids[:2], ids[2:])
	}
	if st := r2.Stats(); st.Commands != 5 {
		t.Errorf("second ring took %d commands, want 5", st.Commands)
	}
}

// waitStopped waits until r's intake has ended (sched.stopping).
func waitStopped(t *testing.T, r *Ring) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r.mu.Lock()
		stopped := r.sched.stopping
		r.mu.Unlock()
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the ring did not stop taking entries")
		}
		time.Sleep(time.Millisecond)
	}
}

// watchNotifier reports when a Wait ends because its context was done:
// Run cancels the waiter only after it stopped taking entries.
type watchNotifier struct {
	*fakering.Notifier
	waitErr   error // returned by Wait instead of waiting, if set
	cancelled chan struct{}
	once      sync.Once
}

func (n *watchNotifier) Wait(ctx context.Context) error {
	if n.waitErr != nil {
		return n.waitErr
	}
	err := n.Notifier.Wait(ctx)
	if err != nil && ctx.Err() != nil {
		n.once.Do(func() { close(n.cancelled) })
	}
	return err
}

func TestRingDrain(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	n := &watchNotifier{Notifier: k.Notifier(), cancelled: make(chan struct{})}
	r, err := NewRing(k.Mem(), n, RingOptions{DrainTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := newHoldHandler()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, h) }()
	for i := range 5 {
		submit(t, k, read10(uint32(i), 1), nil, 512)
	}
	cmds := h.take(t, 5)
	r.Complete(cmds[0], Response{})
	cancel()
	<-n.cancelled // intake stopped, Run is draining
	// Submitted now: must stay in the ring for the next daemon.
	late := submit(t, k, testUnitReady, nil, 0)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with 4 commands in flight", err)
	default:
	}
	for _, c := range cmds[1:] {
		r.Complete(c, Response{})
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after draining; stats %+v", err, r.Stats())
	}
	if got := k.Completed(); got != 5 {
		t.Errorf("kernel completed %d, want 5", got)
	}
	if st := r.Stats(); st.Commands != 5 || st.InFlight != 0 {
		t.Errorf("Stats = %+v, want 5 commands, none in flight", st)
	}
	// The late command is served by the next Ring.
	h2 := &echoHandler{}
	_, stop := runRing(t, k, RingOptions{}, h2)
	waitIdle(t, k)
	h2.wg.Wait()
	if err := stop(); err != nil {
		t.Errorf("second Run = %v", err)
	}
	if c := k.Completions(); c[len(c)-1].ID != late {
		t.Errorf("last completion %d, want the late command %d", c[len(c)-1].ID, late)
	}
}

func TestRingDrainTimeout(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newHoldHandler()
	_, stop := runRing(t, k, RingOptions{DrainTimeout: time.Millisecond}, h)
	submit(t, k, testUnitReady, nil, 0)
	submit(t, k, testUnitReady, nil, 0)
	h.take(t, 2)
	if err := stop(); !errors.Is(err, ErrDrainTimeout) {
		t.Errorf("Run = %v, want ErrDrainTimeout", err)
	}
}

func TestRingNotifierErrors(t *testing.T) {
	errBoom := errors.New("boom")
	t.Run("kick", func(t *testing.T) {
		k := newKernel(t, fakering.Options{})
		k.SetKickError(errBoom)
		h := &echoHandler{}
		r, stop := runRing(t, k, RingOptions{}, h)
		submit(t, k, testUnitReady, nil, 0)
		// Batches first: once the response was written, Handle has
		// added to h.wg, so the Wait below cannot race with that Add.
		for r.Stats().Batches == 0 {
			time.Sleep(time.Millisecond)
		}
		h.wg.Wait()
		if err := stop(); !errors.Is(err, errBoom) {
			t.Errorf("Run = %v, want the kick error", err)
		}
	})
	t.Run("wait", func(t *testing.T) {
		k := newKernel(t, fakering.Options{})
		n := &watchNotifier{Notifier: k.Notifier(), waitErr: errBoom}
		r, err := NewRing(k.Mem(), n, RingOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(context.Background(), &echoHandler{r: r}); !errors.Is(err, errBoom) {
			t.Errorf("Run = %v, want the wait error", err)
		}
	})
}

func TestRingMisuse(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newHoldHandler()
	r, stop := runRing(t, k, RingOptions{}, h)
	submit(t, k, testUnitReady, nil, 0)
	c := h.take(t, 1)[0]
	if err := r.Run(context.Background(), h); err == nil {
		t.Error("second Run = nil, want an error")
	}
	r.Complete(c, Response{})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("second Complete did not panic")
			}
		}()
		r.Complete(c, Response{})
	}()
	waitIdle(t, k)
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestRingReset(t *testing.T) {
	t.Run("completion after reset", func(t *testing.T) {
		k := newKernel(t, fakering.Options{})
		h := newHoldHandler()
		r, stop := runRing(t, k, RingOptions{DrainTimeout: time.Minute}, h)
		for i := range 3 {
			submit(t, k, read10(uint32(i), 1), nil, 512)
		}
		cmds := h.take(t, 3)
		r.Complete(cmds[0], Response{})
		for k.Completed() != 1 {
			time.Sleep(time.Millisecond)
		}
		if err := k.ResetRing(1); err != nil {
			t.Fatal(err)
		}
		r.Complete(cmds[1], Response{}) // finds cmd_tail reset: written nowhere
		r.Complete(cmds[2], Response{})
		if err := stop(); !errors.Is(err, ErrRingReset) {
			t.Fatalf("Run = %v, want ErrRingReset", err)
		}
		if tail := k.Tail(); tail != 0 {
			t.Errorf("cmd_tail = %d after the reset, want 0 (nothing written)", tail)
		}
		got := k.Completions()
		if len(got) != 3 || got[0].Reset || !got[1].Reset || !got[2].Reset || got[1].Status != fakering.StatusBusy {
			t.Errorf("kernel completions %+v, want 1 by us, 2 BUSY by the reset", got)
		}
		if st := r.Stats(); st.InFlight != 0 || st.Completions != 1 {
			t.Errorf("Stats = %+v, want 1 completion written, none in flight", st)
		}
		// A new Ring serves the reset ring.
		_, stop2 := runRing(t, k, RingOptions{}, &echoHandler{})
		if resp, _, err := k.Do(context.Background(), testUnitReady, nil, 0); err != nil || resp.Status != 0 {
			t.Errorf("Do after reset = %+v, %v", resp, err)
		}
		if err := stop2(); err != nil {
			t.Errorf("second Run = %v", err)
		}
	})
	t.Run("new entries after reset", func(t *testing.T) {
		k := newKernel(t, fakering.Options{})
		n := &watchNotifier{Notifier: k.Notifier(), cancelled: make(chan struct{})}
		r, err := NewRing(k.Mem(), n, RingOptions{DrainTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		h := newHoldHandler()
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background(), h) }()
		submit(t, k, read10(1, 1), nil, 512)
		submit(t, k, read10(2, 1), nil, 512)
		cmds := h.take(t, 2)
		if err := k.ResetRing(2); err != nil {
			t.Fatal(err)
		}
		// cmd_tail was 0 before and after: the head behind our
		// position gives the reset away when the ring looks again.
		submit(t, k, testUnitReady, nil, 0)
		waitStopped(t, r) // Run stopped taking entries by itself
		for _, c := range cmds {
			r.Complete(c, Response{})
		}
		if err := <-done; !errors.Is(err, ErrRingReset) {
			t.Fatalf("Run = %v, want ErrRingReset", err)
		}
		if st := r.Stats(); st.Commands != 2 || st.Completions != 0 {
			t.Errorf("Stats = %+v, want 2 commands, nothing written", st)
		}
		if tail := k.Tail(); tail != 0 {
			t.Errorf("cmd_tail = %d, want 0", tail)
		}
	})
}

// inquiryHandler is a tiny Handler: Handle hands each command to a worker
// goroutine, which answers INQUIRY and fails everything else.
type inquiryHandler struct {
	r    *Ring
	work chan *Cmd
}

func (h *inquiryHandler) Handle(c *Cmd)       { h.work <- c } // never blocks: buffered
func (h *inquiryHandler) TMR(TMRType, []*Cmd) {}

func (h *inquiryHandler) worker() {
	for c := range h.work {
		if c.CDB[0] != 0x12 { // INQUIRY
			// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
			sense := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0}
			h.r.Complete(c, Response{Status: 2, Sense: sense})
			continue
		}
		inq := make([]byte, 36)
		copy(inq[8:], "LUNBRDGE")
		n := 0
		for _, b := range c.Data {
			n += copy(b, inq[n:])
		}
		h.r.Complete(c, Response{Status: 0, ShortRead: true, ReadLen: uint32(n)})
	}
}

func ExampleRing() {
	k, err := fakering.NewKernel(fakering.Options{}) // in production: Device.Mem, Device.Notifier
	if err != nil {
		panic(err)
	}
	r, err := NewRing(k.Mem(), k.Notifier(), RingOptions{})
	if err != nil {
		panic(err)
	}
	h := &inquiryHandler{r: r, work: make(chan *Cmd, 128)}
	var wg sync.WaitGroup
	wg.Go(h.worker)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx, h) }()

	resp, data, err := k.Do(ctx, []byte{0x12, 0, 0, 0, 96, 0}, nil, 96)
	fmt.Println(resp.Status, string(data[8:16]), len(data), err)
	resp, _, err = k.Do(ctx, []byte{0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0)
	fmt.Printf("%#x %x %v\n", resp.Status, resp.Sense[12], err)

	cancel()
	fmt.Println(<-errc) // Run drained and returned
	close(h.work)
	wg.Wait()
	// Output:
	// 0 LUNBRDGE 36 <nil>
	// 0x2 20 <nil>
	// <nil>
}

// TestRingStress runs many concurrent commands of every kind through a
// small ring with random worker delays, random short reads and TMRs
// naming random commands, and checks each completes exactly once with its
// own data and status.
func TestRingStress(t *testing.T) {
	for _, flags := range []uint16{fakering.AllCaps, fakering.CapReadLen | fakering.CapTMR} {
		t.Run(fmt.Sprintf("flags=%#x", flags), func(t *testing.T) {
			testRingStress(t, flags)
		})
	}
}

func testRingStress(t *testing.T, flags uint16) {
	k := newKernel(t, fakering.Options{CmdrSize: 1504, DataSize: 16 * 4096, Flags: flags, ExactFlags: true})
	h := &stressHandler{work: make(chan *Cmd, 4096)}
	r, stop := runRing(t, k, RingOptions{}, h)
	var workers sync.WaitGroup
	for seed := range 4 {
		workers.Go(func() { h.worker(r, uint64(seed)) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	var dos atomic.Uint64
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 60 {
				lba := uint32(g*1000 + i)
				switch rng.IntN(4) {
				case 0: // write, checked by the handler
					dos.Add(1)
					out := lbaPattern(lba, 1+rng.IntN(9000))
					resp, _, err := k.Do(ctx, write10(lba, 1), out, 0)
					if err != nil || resp.Status != 0 {
						errs <- fmt.Errorf("write %d: %+v %v", lba, resp, err)
					}
				case 1: // TMR naming whatever ids might be in flight
					ids := []uint16{uint16(1 + rng.IntN(40)), uint16(1 + rng.IntN(40))}
					if err := k.SubmitTMR(ctx, uint8(TMRAbortTask), ids); err != nil {
						errs <- err
					}
				default: // read, maybe short
					dos.Add(1)
					n := 1 + rng.IntN(12000)
					resp, in, err := k.Do(ctx, read10(lba, 1), nil, n)
					want := lbaPattern(lba, n)
					if resp.ReadLenSet {
						want = want[:resp.ReadLen]
					}
					if err != nil || resp.Status != 0 || !bytes.Equal(in, want) {
						errs <- fmt.Errorf("read %d: %+v (%d bytes) %v", lba, resp, len(in), err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitIdle(t, k)
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	close(h.work)
	workers.Wait()
	if h.err != nil {
		t.Error(h.err)
	}
	st := r.Stats()
	n := dos.Load()
	if st.InFlight != 0 || st.Commands != n || st.Completions != n || st.Pads == 0 || st.TMRs == 0 {
		t.Errorf("Stats = %+v, want %d commands and completions, PADs and TMRs", st, n)
	}
	if got := uint64(len(k.Completions())); got != n {
		t.Errorf("kernel saw %d completions, want %d", got, n)
	}
	t.Logf("%d commands, %d TMRs marked %d commands aborted", n, st.TMRs, h.aborted.Load())
}

// stressHandler completes commands from workers after random delays:
// writes are checked against the LBA pattern, reads filled with it and
// sometimes cut short.
type stressHandler struct {
	work    chan *Cmd
	aborted atomic.Uint64
	err     error // set on the ring goroutine, read after Run returned
}

func (h *stressHandler) Handle(c *Cmd) { h.work <- c }

func (h *stressHandler) TMR(kind TMRType, aborted []*Cmd) {
	for _, c := range aborted {
		if !c.Aborted() || kind != TMRAbortTask {
			h.err = fmt.Errorf("TMR(%v) lists cmd %d, Aborted() = %v", kind, c.ID, c.Aborted())
		}
	}
	h.aborted.Add(uint64(len(aborted)))
}

func (h *stressHandler) worker(r *Ring, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	for c := range h.work {
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
		}
		lba := uint32(c.CDB[2])<<24 | uint32(c.CDB[3])<<16 | uint32(c.CDB[4])<<8 | uint32(c.CDB[5])
		var buf []byte
		for _, b := range c.Data {
			buf = append(buf, b...)
		}
		want := lbaPattern(lba, len(buf))
		resp := Response{}
		switch c.CDB[0] {
		case 0x2a:
			if !bytes.Equal(buf, want) {
				resp.Status = 2 // the test sees a non-GOOD status
			}
		case 0x28:
			o := 0
			for _, b := range c.Data {
				o += copy(b, want[o:])
			}
			if rng.IntN(3) == 0 && len(buf) > 1 {
				resp.ShortRead, resp.ReadLen = true, uint32(1+rng.IntN(len(buf)-1))
			}
		}
		r.Complete(c, resp)
	}
}

func TestRingRunCancelled(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	submit(t, k, testUnitReady, nil, 0)
	r, err := NewRing(k.Mem(), k.Notifier(), RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := newHoldHandler()
	if err := r.Run(ctx, h); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if st := r.Stats(); st.Commands != 0 {
		t.Errorf("a Run cancelled before it started took %d commands", st.Commands)
	}
}

// TestCompleteWritesDirectly: while nothing else holds the ring, Complete
// writes the response and kicks the kernel itself, so the kernel has the
// completion when Complete returns.
func TestCompleteWritesDirectly(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	h := newHoldHandler()
	_, stop := runRing(t, k, RingOptions{}, h)
	direct := 0
	for i := range 20 {
		submit(t, k, testUnitReady, nil, 0)
		c := h.take(t, 1)[0]
		before := k.Completed()
		// Give the executor time to go back to waiting (no timing is
		// asserted: a busy ring only means its holder writes c).
		time.Sleep(time.Millisecond)
		r := c.ring
		r.Complete(c, statusFor(c.ID))
		if k.Completed() == before+1 {
			direct++
		}
		waitIdle(t, k)
		if got := k.Completed(); got != uint64(i+1) {
			t.Fatalf("kernel completed %d commands, want %d", got, i+1)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if direct == 0 {
		t.Error("no completion was written by Complete itself")
	}
	t.Logf("%d of 20 completions written directly", direct)
}

// gatedNotifier holds the first Kick until release is closed, and counts
// the kicks.
type gatedNotifier struct {
	Notifier
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (g *gatedNotifier) Kick() error {
	if g.calls.Add(1) == 1 {
		close(g.entered)
		<-g.release
	}
	return g.Notifier.Kick()
}

// TestKickMerged: kicks asked for while one is in progress are merged
// into one more kick by the goroutine that is kicking, and every
// completion reaches the kernel (the peer's handler merges its kicks the
// same way).
func TestKickMerged(t *testing.T) {
	k := newKernel(t, fakering.Options{})
	g := &gatedNotifier{Notifier: k.Notifier(), entered: make(chan struct{}), release: make(chan struct{})}
	r, err := NewRing(k.Mem(), g, RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &echoHandler{r: r}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx, h) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run = %v", err)
		}
		h.wait()
	}()

	done := make(chan error, 3)
	do := func() {
		_, _, err := k.Do(ctx, testUnitReady, nil, 0)
		done <- err
	}
	go do()
	select {
	case <-g.entered: // the first completion's kick is held
	case <-time.After(10 * time.Second):
		t.Fatal("no kick 10s after the first command")
	}
	// The kernel has the kick, so the initiator may already see the
	// command complete: Stats must already count it.
	if n := r.Stats().Kicks; n != 1 {
		t.Errorf("Stats().Kicks = %d while the kernel takes the first kick, want 1", n)
	}
	go do()
	go do()
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Completions < 3 {
		if time.Now().After(deadline) {
			close(g.release)
			t.Fatalf("%d completions written 10s after three commands, want 3", r.Stats().Completions)
		}
		time.Sleep(time.Millisecond)
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d kicks made while the first was held, want 1 (the others merged)", n)
	}
	close(g.release)
	for range 3 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a completion merged into the held kick never reached the kernel")
		}
	}
	if n := g.calls.Load(); n != 2 {
		t.Errorf("%d kicks in all, want 2 (the held one and one for the two merged into it)", n)
	}
}
