// SPDX-License-Identifier: Apache-2.0

package tcmu

// The codec's tests: entries the ring ABI allows (unknown ops, short
// reads, split iovecs) and the ones it does not (corrupt rings, bad
// mailboxes). They drive a whole Ring over the fake kernel, as the
// codec's only user.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/internal/fakering"
)

func TestRingUnknownOp(t *testing.T) {
	k := newKernel(t, fakering.Options{CmdrSize: 2048})
	ctx := context.Background()
	submit(t, k, testUnitReady, nil, 0)
	if err := k.SubmitRaw(ctx, 5, 64); err != nil {
		t.Fatal(err)
	}
	raw := k.LastEntry()
	h := &echoHandler{}
	r, stop := runRing(t, k, RingOptions{}, h)
	for i := range 30 { // wrap a few times past the unknown entry
		if resp, _, err := k.Do(ctx, testUnitReady, nil, 0); err != nil || resp.Status != 0 {
			t.Fatalf("Do = %+v, %v", resp, err)
		}
		if i > 0 {
			continue
		}
		// Not yet overwritten: the fake skipped it on our flag.
		if f := k.Mem()[raw+hdrUflags]; f&uflagUnknownOp == 0 {
			t.Errorf("uflags of the unknown entry = %#x, want TCMU_UFLAG_UNKNOWN_OP", f)
		}
	}
	waitIdle(t, k)
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	if st := r.Stats(); st.UnknownOps != 1 || st.Commands != 31 {
		t.Errorf("Stats = %+v, want 1 unknown op and 31 commands", st)
	}
}

func TestRingReadLen(t *testing.T) {
	sense := append([]byte{0x70, 0, 3, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11}, make([]byte, 200)...)
	sense[150] = 0xee // beyond 96 bytes: truncated
	tests := []struct {
		name     string
		flags    uint16
		resp     Response
		wantLen  int
		wantSet  bool
		wantData bool
	}{
		{"short read", fakering.AllCaps, Response{ShortRead: true, ReadLen: 1000}, 1000, true, true},
		{"read_len larger than buffer", fakering.AllCaps, Response{ShortRead: true, ReadLen: 99999}, 8192, true, true},
		{"read_len 0 ignored by the kernel", fakering.AllCaps, Response{ShortRead: true}, 8192, false, true},
		{"ReadLen without ShortRead", fakering.AllCaps, Response{ReadLen: 10}, 8192, false, true},
		{"no CAP_READ_LEN", fakering.CapOOOC, Response{ShortRead: true, ReadLen: 1000}, 8192, false, true},
		{"check condition with read_len", fakering.AllCaps, Response{Status: 2, Sense: sense, ShortRead: true, ReadLen: 512}, 512, true, true},
		{"check condition", fakering.AllCaps, Response{Status: 2, Sense: sense}, 8192, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(t, fakering.Options{Flags: tt.flags, ExactFlags: true})
			h := newHoldHandler()
			r, _ := runRing(t, k, RingOptions{}, h)
			submit(t, k, read10(0, 16), nil, 8192)
			c := h.take(t, 1)[0]
			o := 0
			for _, b := range c.Data {
				o += copy(b, pattern(8192, 9)[o:])
			}
			r.Complete(c, tt.resp)
			waitIdle(t, k)
			resp := k.Completions()[0]
			in := resp.Data
			if resp.ReadLen != tt.wantLen || resp.ReadLenSet != tt.wantSet {
				t.Errorf("ReadLen = %d (set %v), want %d (set %v)", resp.ReadLen, resp.ReadLenSet, tt.wantLen, tt.wantSet)
			}
			if tt.wantData && !bytes.Equal(in, pattern(8192, 9)[:tt.wantLen]) {
				t.Errorf("data-in = %d bytes, want the first %d of the pattern", len(in), tt.wantLen)
			}
			if !tt.wantData && in != nil {
				t.Errorf("data-in = %d bytes, want none", len(in))
			}
			if tt.resp.Status == 2 && !bytes.Equal(resp.Sense, sense[:96]) {
				t.Errorf("sense = %x, want the first 96 bytes", resp.Sense)
			}
		})
	}
}

// putU32 / putU64 write into the fake's mapping (before a Ring runs).
func putU32(mem []byte, off int, v uint32) { ne.PutUint32(mem[off:], v) }
func putU64(mem []byte, off int, v uint64) { ne.PutUint64(mem[off:], v) }

func TestRingCorrupt(t *testing.T) {
	const cmdrSize = 4096
	tests := []struct {
		name    string
		corrupt func(k *fakering.Kernel, mem []byte, e int) // e: offset of the second entry
	}{
		{"len_op zero", func(_ *fakering.Kernel, mem []byte, e int) { putU32(mem, e, 0|opCmd) }},
		{"len beyond cmd_head", func(_ *fakering.Kernel, mem []byte, e int) { putU32(mem, e, 1024|opCmd) }},
		{"len beyond ring end", func(_ *fakering.Kernel, mem []byte, e int) { putU32(mem, e, 8192|opPad) }},
		{"CMD shorter than an entry", func(_ *fakering.Kernel, mem []byte, e int) { putU32(mem, e, 64|opCmd) }},
		{"iov_cnt overflows entry", func(_ *fakering.Kernel, mem []byte, e int) { putU32(mem, e+reqIovCnt, 1<<30) }},
		{"iov_dif_cnt overflows entry", func(_ *fakering.Kernel, mem []byte, e int) { putU32(mem, e+reqIovDifCnt, 5) }},
		{"cdb_off in mailbox", func(_ *fakering.Kernel, mem []byte, e int) { putU64(mem, e+reqCdbOff, 16) }},
		{"cdb_off in data area", func(k *fakering.Kernel, mem []byte, e int) {
			putU64(mem, e+reqCdbOff, uint64(k.DataOff()+10))
		}},
		{"cdb_off huge", func(_ *fakering.Kernel, mem []byte, e int) { putU64(mem, e+reqCdbOff, 1<<63) }},
		{"CDB crosses ring end", func(k *fakering.Kernel, mem []byte, e int) {
			o := k.CmdrOff() + cmdrSize - 4
			mem[o] = 0x28 // READ(10): 10 bytes
			putU64(mem, e+reqCdbOff, uint64(o))
		}},
		{"variable-length CDB crosses ring end", func(k *fakering.Kernel, mem []byte, e int) {
			o := k.CmdrOff() + cmdrSize - 16
			mem[o], mem[o+7] = 0x7f, 200
			putU64(mem, e+reqCdbOff, uint64(o))
		}},
		{"iov in the command ring", func(k *fakering.Kernel, mem []byte, e int) {
			putU64(mem, e+reqIov+iovBase, uint64(k.CmdrOff()+64))
		}},
		{"iov in the mailbox", func(_ *fakering.Kernel, mem []byte, e int) { putU64(mem, e+reqIov+iovBase, 0) }},
		{"iov past the mapping", func(_ *fakering.Kernel, mem []byte, e int) {
			putU64(mem, e+reqIov+iovLen, uint64(len(mem)))
		}},
		{"iov base+len overflows", func(_ *fakering.Kernel, mem []byte, e int) {
			putU64(mem, e+reqIov+iovLen, ^uint64(0)-100)
		}},
		{"iov base past the mapping", func(_ *fakering.Kernel, mem []byte, e int) {
			putU64(mem, e+reqIov+iovBase, uint64(len(mem))+4096)
			putU64(mem, e+reqIov+iovLen, 0)
		}},
		{"duplicate cmd_id", func(_ *fakering.Kernel, mem []byte, e int) {
			ne.PutUint16(mem[e+hdrCmdID:], ne.Uint16(mem[128+hdrCmdID:]))
		}},
		{"cmd_head outside ring", func(_ *fakering.Kernel, mem []byte, _ int) { putU32(mem, mbCmdHead, cmdrSize) }},
		{"cmd_head misaligned", func(_ *fakering.Kernel, mem []byte, _ int) { putU32(mem, mbCmdHead, 132) }},
		{"TMR cmd_cnt overflows entry", func(_ *fakering.Kernel, mem []byte, e int) {
			putU32(mem, e, 120|opTMR)
			putU32(mem, e+tmrCmdCnt, 1000)
		}},
		{"TMR shorter than its header", func(_ *fakering.Kernel, mem []byte, e int) {
			// A 24-byte TMR, then a PAD for the rest of the entry.
			putU32(mem, e, 24|opTMR)
			putU32(mem, e+24, 96|opPad)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(t, fakering.Options{CmdrSize: cmdrSize})
			submit(t, k, read10(1, 1), nil, 512)
			submit(t, k, read10(2, 1), nil, 512) // 120+8 bytes: ends at 256
			e := k.LastEntry()
			tt.corrupt(k, k.Mem(), e)
			h := &echoHandler{}
			r, err := NewRing(k.Mem(), k.Notifier(), RingOptions{DrainTimeout: time.Minute})
			if err != nil {
				t.Fatalf("NewRing: %v", err)
			}
			h.setRing(r)
			err = r.Run(context.Background(), h)
			if !errors.Is(err, ErrCorruptRing) || errors.Is(err, ErrDrainTimeout) {
				t.Fatalf("Run = %v, want ErrCorruptRing (and the first command drained)", err)
			}
			h.wg.Wait()
			t.Logf("Run = %v", err)
		})
	}
}

func TestNewRingMailbox(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(mem []byte) []byte
		wantErr error
	}{
		{"valid", func(m []byte) []byte { return m }, nil},
		{"version 1", func(m []byte) []byte { ne.PutUint16(m[mbVersion:], 1); return m }, ErrVersion},
		{"cmdr_off in mailbox", func(m []byte) []byte { putU32(m, mbCmdrOff, 64); return m }, ErrCorruptRing},
		{"cmdr_off misaligned", func(m []byte) []byte { putU32(m, mbCmdrOff, 132); return m }, ErrCorruptRing},
		{"cmdr_size zero", func(m []byte) []byte { putU32(m, mbCmdrSize, 0); return m }, ErrCorruptRing},
		{"cmdr_size misaligned", func(m []byte) []byte { putU32(m, mbCmdrSize, 4092); return m }, ErrCorruptRing},
		{"ring beyond mapping", func(m []byte) []byte { putU32(m, mbCmdrSize, 0xfffffff8); return m }, ErrCorruptRing},
		{"cmd_tail outside ring", func(m []byte) []byte { putU32(m, mbCmdTail, 4096); return m }, ErrCorruptRing},
		{"cmd_tail misaligned", func(m []byte) []byte { putU32(m, mbCmdTail, 4); return m }, ErrCorruptRing},
		{"shorter than mailbox", func(m []byte) []byte { return m[:100] }, ErrCorruptRing},
		{"empty", func([]byte) []byte { return nil }, ErrCorruptRing},
		{"misaligned mapping", func(m []byte) []byte { return m[1:] }, ErrCorruptRing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(t, fakering.Options{CmdrSize: 4096, DataSize: 4096})
			mem := tt.mutate(k.Mem())
			r, err := NewRing(mem, k.Notifier(), RingOptions{})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("NewRing = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (r.Caps() != Caps(fakering.AllCaps) || r.Flags() != fakering.AllCaps) {
				t.Errorf("Caps = %v, want all four", r.Caps())
			}
		})
	}
}

func TestRingIovSplit(t *testing.T) {
	k := newKernel(t, fakering.Options{DataSize: 64 << 10})
	submit(t, k, read10(0, 8), nil, 4096)
	// Rewrite the entry as a bidirectional command with a protection
	// buffer: 1 data, 2 bidi, 1 DIF iovec (4 fit in the 112-byte base).
	e, mem, d := k.LastEntry(), k.Mem(), uint64(k.DataOff())
	iovs := [][2]uint64{{d, 512}, {d + 4096, 100}, {d + 8192, 4096}, {d + 20000, 8}}
	for i, v := range iovs {
		putU64(mem, e+reqIov+16*i+iovBase, v[0])
		putU64(mem, e+reqIov+16*i+iovLen, v[1])
	}
	putU32(mem, e+reqIovCnt, 1)
	putU32(mem, e+reqIovBidiCnt, 2)
	putU32(mem, e+reqIovDifCnt, 1)
	for i := range iovs {
		mem[iovs[i][0]] = byte(i + 1)
	}
	h := newHoldHandler()
	r, stop := runRing(t, k, RingOptions{}, h)
	c := h.take(t, 1)[0]
	lens := func(bufs [][]byte) (n []int) {
		for _, b := range bufs {
			n = append(n, len(b))
		}
		return n
	}
	if got := [][]int{lens(c.Data), lens(c.BidiData), lens(c.DIF)}; fmt.Sprint(got) != "[[512] [100 4096] [8]]" {
		t.Errorf("Data/BidiData/DIF lengths %v, want [[512] [100 4096] [8]]", got)
	}
	if c.Data[0][0] != 1 || c.BidiData[0][0] != 2 || c.BidiData[1][0] != 3 || c.DIF[0][0] != 4 {
		t.Errorf("buffers do not map the iovecs' data")
	}
	if c.DataLen() != 512 || cap(c.Data[0]) != 512 {
		t.Errorf("DataLen %d, cap %d, want 512 (capacity clipped)", c.DataLen(), cap(c.Data[0]))
	}
	r.Complete(c, Response{})
	waitIdle(t, k)
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}
