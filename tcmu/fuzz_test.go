// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"bytes"
	"context"
	"testing"

	"github.com/lunbridge/lunbridge/internal/fakering"
)

// fuzzDataArea is the data area size of structured fuzz inputs.
const fuzzDataArea = 16384

// fuzzMem turns a fuzz input into a mapping. Inputs starting with an even
// byte are the mapping itself (mailbox included). Odd ones build a valid
// mailbox so that the fuzzer spends its time in entry parsing: bytes 1-2
// flags, 3-4 the ring size in 8-byte units, 5-6 cmd_head, 7-8 cmd_tail
// (both raw, possibly invalid), then the ring bytes; a 16 KiB data area
// follows.
func fuzzMem(data []byte) []byte {
	if len(data) == 0 || data[0]&1 == 0 {
		if len(data) > 0 {
			data = data[1:]
		}
		// A fresh allocation is 8-byte aligned, like a real mapping.
		return append(make([]byte, 0, len(data)), data...)
	}
	var hdr [9]byte
	copy(hdr[:], data)
	body := data[min(len(data), 9):]
	size := 8 * (1 + uint32(ne.Uint16(hdr[3:]))%1024)
	mem := make([]byte, mbSize+int(size)+fuzzDataArea)
	ne.PutUint16(mem[mbVersion:], mailboxVersion)
	ne.PutUint16(mem[mbFlags:], ne.Uint16(hdr[1:]))
	ne.PutUint32(mem[mbCmdrOff:], mbSize)
	ne.PutUint32(mem[mbCmdrSize:], size)
	ne.PutUint32(mem[mbCmdHead:], uint32(ne.Uint16(hdr[5:])))
	ne.PutUint32(mem[mbCmdTail:], uint32(ne.Uint16(hdr[7:])))
	copy(mem[mbSize:mbSize+size], body)
	return mem
}

// fuzzSeed encodes a fake kernel's ring in the structured format.
func fuzzSeed(k *fakering.Kernel, flags uint16) []byte {
	mem := k.Mem()
	size := ne.Uint32(mem[mbCmdrSize:])
	seed := make([]byte, 9, 9+size)
	seed[0] = 1
	ne.PutUint16(seed[1:], flags)
	ne.PutUint16(seed[3:], uint16(size/8-1))
	ne.PutUint16(seed[5:], uint16(ne.Uint32(mem[mbCmdHead:])))
	ne.PutUint16(seed[7:], uint16(ne.Uint32(mem[mbCmdTail:])))
	return append(seed, mem[mbSize:mbSize+size]...)
}

// syncHandler completes every command at once, from Handle.
type syncHandler struct{ r *Ring }

func (h syncHandler) Handle(c *Cmd)       { h.r.Complete(c, Response{}) }
func (h syncHandler) TMR(TMRType, []*Cmd) {}

// nopNotifier never wakes; the fuzzer drives the ring by hand.
type nopNotifier struct{}

func (nopNotifier) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (nopNotifier) Kick() error                    { return nil }

// fuzzHandler checks every Cmd against the mapping it came from.
type fuzzHandler struct {
	t        *testing.T
	mem      []byte
	dataOff  int
	cmds     []*Cmd
	inflight map[uint16]bool
}

func (h *fuzzHandler) Handle(c *Cmd) {
	t := h.t
	if h.inflight[c.ID] {
		t.Fatalf("cmd_id %d handed out twice", c.ID)
	}
	h.inflight[c.ID] = true
	n := len(c.CDB)
	switch {
	case n == 0:
		t.Fatalf("cmd %d: empty CDB", c.ID)
	case c.CDB[0] == variableLengthCDB && n != 8+int(c.CDB[7]):
		t.Fatalf("cmd %d: variable-length CDB of %d bytes, ADDITIONAL CDB LENGTH %d", c.ID, n, c.CDB[7])
	case c.CDB[0] != variableLengthCDB && n != int(cdbGroupLen[c.CDB[0]>>5]):
		t.Fatalf("cmd %d: %d-byte CDB for opcode %#x", c.ID, n, c.CDB[0])
	}
	// Writing to the CDB copy and to every buffer must leave the mailbox
	// and the command ring untouched. A buffer is contiguous, so it
	// overlaps [0, dataOff) only if its first byte does: flipping first
	// bytes is enough (and keeps huge iovec lists cheap).
	before := bytes.Clone(h.mem[:h.dataOff])
	for i := range c.CDB {
		c.CDB[i] ^= 0xa5
	}
	for _, bufs := range [][][]byte{c.Data, c.BidiData, c.DIF} {
		for _, b := range bufs {
			if len(b) > len(h.mem)-h.dataOff {
				t.Fatalf("cmd %d: %d-byte buffer, data area %d", c.ID, len(b), len(h.mem)-h.dataOff)
			}
			if len(b) > 0 {
				b[0] ^= 0x5a
			}
		}
	}
	if !bytes.Equal(before, h.mem[:h.dataOff]) {
		t.Fatalf("cmd %d: its CDB or buffers alias the mailbox or command ring", c.ID)
	}
	h.cmds = append(h.cmds, c)
}

func (h *fuzzHandler) TMR(_ TMRType, aborted []*Cmd) {
	for _, c := range aborted {
		if !c.Aborted() || !h.inflight[c.ID] {
			h.t.Fatalf("TMR names cmd %d: aborted %v, in flight %v", c.ID, c.Aborted(), h.inflight[c.ID])
		}
	}
}

func FuzzRing(f *testing.F) {
	// Seeds: rings as the fake kernel lays them out.
	ctx := context.Background()
	for _, flags := range []uint16{fakering.AllCaps, fakering.CapReadLen} {
		k, err := fakering.NewKernel(fakering.Options{CmdrSize: 1024, DataSize: 16384, Flags: flags, ExactFlags: true})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fuzzSeed(k, flags)) // empty ring
		for i := range 3 {
			if _, err := k.Submit(ctx, read10(uint32(i), 8), nil, 4096); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(fuzzSeed(k, flags))
		if err := k.SubmitTMR(ctx, uint8(TMRAbortTask), []uint16{2, 3}); err != nil {
			f.Fatal(err)
		}
		if err := k.SubmitRaw(ctx, 6, 16); err != nil {
			f.Fatal(err)
		}
		// Variable-length CDB, a write, and a PAD at the ring end.
		if _, err := k.Submit(ctx, append([]byte{0x7f, 0, 0, 0, 0, 0, 0, 16}, make([]byte, 16)...), nil, 0); err != nil {
			f.Fatal(err)
		}
		if _, err := k.Submit(ctx, write10(1, 2), make([]byte, 1024), 0); err != nil {
			f.Fatal(err)
		}
		f.Add(fuzzSeed(k, flags))
		raw := append([]byte{0}, k.Mem()...)
		f.Add(raw)
	}
	// A ring that wrapped: a PAD at the end, entries from the start.
	k, err := fakering.NewKernel(fakering.Options{CmdrSize: 1024, DataSize: 16384})
	if err != nil {
		f.Fatal(err)
	}
	r, err := NewRing(k.Mem(), k.Notifier(), RingOptions{})
	if err != nil {
		f.Fatal(err)
	}
	sync := syncHandler{r}
	for range 6 { // 120-byte entries: later 128-byte ones need a PAD
		if _, err := k.Submit(ctx, testUnitReady, nil, 0); err != nil {
			f.Fatal(err)
		}
		if err := r.poll(sync); err != nil {
			f.Fatal(err)
		}
		if err := r.flush(); err != nil {
			f.Fatal(err)
		}
	}
	for range 4 {
		if _, err := k.Submit(ctx, write10(0, 1), make([]byte, 512), 0); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(fuzzSeed(k, fakering.AllCaps))
	f.Add([]byte{})
	f.Add([]byte{1})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip("larger than 64 KiB: the per-command checks would dominate")
		}
		mem := fuzzMem(data)
		r, err := NewRing(mem, nopNotifier{}, RingOptions{})
		if err != nil {
			return
		}
		h := &fuzzHandler{t: t, mem: mem, dataOff: int(r.codec.dataOff), inflight: map[uint16]bool{}}
		perr := r.poll(h)
		if err := r.flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		if st := r.Stats(); st.Commands != uint64(len(h.cmds)) || st.InFlight != uint64(len(h.cmds)) {
			t.Fatalf("Stats = %+v with %d commands handed out", st, len(h.cmds))
		}
		// Complete everything in reverse, with sense data, then retire.
		for i := len(h.cmds) - 1; i >= 0; i-- {
			r.Complete(h.cmds[i], Response{Status: 2, Sense: make([]byte, 200), ShortRead: true, ReadLen: 1})
		}
		if err := r.flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		if len(r.codec.inflight) != 0 || r.codec.slots.len() != 0 {
			t.Fatalf("after completing everything: %d in flight, %d slots left (poll: %v)",
				len(r.codec.inflight), r.codec.slots.len(), perr)
		}
		if r.codec.tail != r.codec.pos {
			t.Fatalf("cmd_tail %d, want our position %d after retiring everything", r.codec.tail, r.codec.pos)
		}
		if got := loadCmdTail(mem); got != r.codec.tail {
			t.Fatalf("shared cmd_tail %d, ours %d", got, r.codec.tail)
		}
	})
}
