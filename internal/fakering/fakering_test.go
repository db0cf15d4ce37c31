// SPDX-License-Identifier: Apache-2.0

package fakering

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// These tests act as the daemon by hand, so that the fake's layout is
// checked against the kernel's code (queue_cmd_ring, ring_insert_padding,
// tcmu_handle_completions) independently of package tcmu.

type rawEntry struct {
	off    int // mapping offset
	lenOp  uint32
	id     uint16
	iovCnt uint32
	cdbOff uint64
	iovs   [][2]uint64
}

func readEntry(mem []byte, off int) rawEntry {
	e := rawEntry{
		off:    off,
		lenOp:  ne.Uint32(mem[off:]),
		id:     ne.Uint16(mem[off+hdrCmdID:]),
		iovCnt: ne.Uint32(mem[off+reqIovCnt:]),
		cdbOff: ne.Uint64(mem[off+reqCdbOff:]),
	}
	for i := range int(e.iovCnt) {
		o := off + reqIov + 16*i
		e.iovs = append(e.iovs, [2]uint64{ne.Uint64(mem[o:]), ne.Uint64(mem[o+8:])})
	}
	return e
}

func head(k *Kernel) uint32 { return ne.Uint32(k.mem[mbCmdHead:]) }

// complete writes a response into the entry slot at ring offset off (as a
// daemon would) and moves cmd_tail past it.
func complete(t *testing.T, k *Kernel, n *Notifier, off int, id uint16, status uint8, uflags uint8, readLen uint32) {
	t.Helper()
	e := k.ring[off:]
	ne.PutUint16(e[hdrCmdID:], id)
	e[hdrUflags] = uflags
	e[rspStatus] = status
	ne.PutUint32(e[rspReadLen:], readLen)
	copy(e[rspSense:], []byte{0x70, 0, 5})
	l := ne.Uint32(e) &^ 7
	storeTail(k.mem, uint32((off+int(l))%int(k.cmdrSize)))
	if err := n.Kick(); err != nil {
		t.Fatal(err)
	}
}

func TestMailbox(t *testing.T) {
	k, err := NewKernel(Options{CmdrSize: 1024, DataSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	m := k.Mem()
	if len(m) != 128+1024+8192 {
		t.Errorf("mapping is %d bytes, want mailbox + ring + data", len(m))
	}
	checks := []struct {
		field     string
		got, want uint64
	}{
		{"version", uint64(ne.Uint16(m[mbVersion:])), 2},
		{"flags", uint64(ne.Uint16(m[mbFlags:])), 0xf},
		{"cmdr_off", uint64(ne.Uint32(m[mbCmdrOff:])), 128},
		{"cmdr_size", uint64(ne.Uint32(m[mbCmdrSize:])), 1024},
		{"cmd_head", uint64(ne.Uint32(m[mbCmdHead:])), 0},
		{"cmd_tail", uint64(ne.Uint32(m[mbCmdTail:])), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("mailbox %s = %d, want %d", c.field, c.got, c.want)
		}
	}
	if _, err := NewKernel(Options{CmdrSize: 1001}); err == nil {
		t.Error("NewKernel accepted a ring size that is no multiple of 8")
	}
}

func TestPlacement(t *testing.T) {
	ctx := context.Background()
	k, err := NewKernel(Options{CmdrSize: 1024, DataSize: 4 * 4096})
	if err != nil {
		t.Fatal(err)
	}
	n := k.Notifier()
	read := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0}
	// 1: READ(10) of 8 KiB: blocks 0 and 1 are adjacent, one iovec.
	// Entry: max(48+16, 112) + round_up(10, 8) = 128 bytes.
	id, err := k.Submit(ctx, read, nil, 8192)
	if err != nil || id != 1 {
		t.Fatalf("Submit = %d, %v, want id 1", id, err)
	}
	e := readEntry(k.mem, 128)
	want := rawEntry{off: 128, lenOp: 128 | opCmd, id: 1, iovCnt: 1, cdbOff: 128 + 112,
		iovs: [][2]uint64{{uint64(k.dataOff), 8192}}}
	if e.lenOp != want.lenOp || e.id != want.id || e.cdbOff != want.cdbOff || len(e.iovs) != 1 || e.iovs[0] != want.iovs[0] {
		t.Errorf("entry 1 = %+v, want %+v", e, want)
	}
	if !bytes.Equal(k.mem[e.cdbOff:e.cdbOff+10], read) || head(k) != 128 {
		t.Errorf("CDB or cmd_head (%d) wrong", head(k))
	}
	// 2: WRITE(10) of 100 bytes of data-out in block 2: one short iovec.
	write := []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	out := bytes.Repeat([]byte{0xab}, 100)
	if id, err := k.Submit(ctx, write, out, 0); err != nil || id != 2 {
		t.Fatalf("Submit = %d, %v, want id 2", id, err)
	}
	e = readEntry(k.mem, 256)
	if e.id != 2 || len(e.iovs) != 1 || e.iovs[0] != [2]uint64{uint64(k.dataOff + 2*4096), 100} {
		t.Errorf("entry 2 = %+v", e)
	}
	if !bytes.Equal(k.mem[k.dataOff+2*4096:][:100], out) {
		t.Error("data-out not copied into the data area")
	}
	// Complete 1 (not the oldest first is allowed: out of order is the
	// daemon's business; here in order). Its blocks 0-1 become free.
	complete(t, k, n, 0, 1, StatusGood, 0, 0)
	// 3: 12 KiB read gets blocks 0, 1 and 3: two iovecs (0-1 merged).
	if id, err := k.Submit(ctx, read, nil, 12288); err != nil || id != 1 {
		t.Fatalf("Submit = %d, %v, want the freed id 1", id, err)
	}
	e = readEntry(k.mem, 384)
	wantIovs := [][2]uint64{{uint64(k.dataOff), 8192}, {uint64(k.dataOff + 3*4096), 4096}}
	if len(e.iovs) != 2 || e.iovs[0] != wantIovs[0] || e.iovs[1] != wantIovs[1] {
		t.Errorf("iovecs %v, want %v", e.iovs, wantIovs)
	}
	// A TMR naming ids 1 and 2: 32 + 4 bytes, rounded up to 40.
	if err := k.SubmitTMR(ctx, 1, []uint16{1, 2}); err != nil {
		t.Fatal(err)
	}
	tmr := k.ring[384:]
	if ne.Uint32(tmr) != 40|opTMR || tmr[tmrType] != 1 || ne.Uint32(tmr[tmrCmdCnt:]) != 2 ||
		ne.Uint16(tmr[tmrCmdIDs:]) != 1 || ne.Uint16(tmr[tmrCmdIDs+2:]) != 2 {
		t.Errorf("TMR entry % x", tmr[:40])
	}
	// Retire 2, 1 and the TMR (ring 384-424), then place 128-byte
	// entries until one does not fit before the end: a PAD goes there.
	complete(t, k, n, 128, 2, StatusGood, 0, 0)
	complete(t, k, n, 256, 1, StatusGood, 0, 0)
	storeTail(k.mem, 424)
	if err := n.Kick(); err != nil || k.Err() != nil {
		t.Fatalf("kick over the TMR: %v, %v", err, k.Err())
	}
	for range 4 { // 424 -> 552 -> 680 -> 808 -> 936
		if _, err := k.Submit(ctx, read, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if head(k) != 936 {
		t.Fatalf("cmd_head = %d, want 936", head(k))
	}
	if _, err := k.Submit(ctx, read, nil, 0); err != nil { // 88 left: PAD, then at 0
		t.Fatal(err)
	}
	if pad := ne.Uint32(k.ring[936:]); pad != 88|opPad || ne.Uint16(k.ring[936+hdrCmdID:]) != 0 {
		t.Errorf("PAD len_op %#x, want %#x", pad, 88|opPad)
	}
	if head(k) != 128 || k.LastEntry() != 128 {
		t.Errorf("cmd_head %d, last entry %d, want 128 and 128", head(k), k.LastEntry())
	}
	if k.InFlight() != 5 {
		t.Errorf("InFlight = %d, want 5", k.InFlight())
	}
}

func TestCompletion(t *testing.T) {
	ctx := context.Background()
	read := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0}
	tests := []struct {
		name     string
		status   uint8
		uflags   uint8
		readLen  uint32
		wantLen  int
		wantData bool
	}{
		{"good", StatusGood, 0, 0, 8192, true},
		{"read_len", StatusGood, uflagReadLen, 100, 100, true},
		{"read_len 0 ignored", StatusGood, uflagReadLen, 0, 8192, true},
		{"read_len without flag ignored", StatusGood, 0, 100, 8192, true},
		{"check condition", StatusCheckCondition, 0, 0, 8192, false},
		{"check condition with read_len", StatusCheckCondition, uflagReadLen, 10, 10, true},
		{"unknown op", StatusGood, uflagUnknownOp, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKernel(Options{})
			if err != nil {
				t.Fatal(err)
			}
			n := k.Notifier()
			id, err := k.Submit(ctx, read, nil, 8192)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 8192 {
				k.mem[k.dataOff+i] = byte(i)
			}
			complete(t, k, n, 0, id, tt.status, tt.uflags, tt.readLen)
			if err := k.Err(); err != nil {
				t.Fatal(err)
			}
			r := k.Completions()[0]
			if tt.uflags&uflagUnknownOp != 0 {
				if !r.UnknownOp || r.Status != StatusCheckCondition || r.Data != nil {
					t.Errorf("response %+v, want CHECK CONDITION for UNKNOWN_OP", r)
				}
				return
			}
			if r.Status != tt.status || (r.Data != nil) != tt.wantData {
				t.Errorf("response %+v", r)
			}
			if tt.wantData && (r.ReadLen != tt.wantLen || len(r.Data) != tt.wantLen || r.Data[tt.wantLen-1] != byte(tt.wantLen-1)) {
				t.Errorf("data-in %d bytes (ReadLen %d), want %d", len(r.Data), r.ReadLen, tt.wantLen)
			}
			if tt.status == StatusCheckCondition && (len(r.Sense) != 96 || r.Sense[2] != 5) {
				t.Errorf("sense %x", r.Sense)
			}
		})
	}
}

func TestBroken(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		tail uint32
		id   uint16
	}{
		{"unknown cmd_id", 120, 77},
		{"tail beyond head", 240, 1},
		{"tail outside ring", 1 << 20, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKernel(Options{})
			if err != nil {
				t.Fatal(err)
			}
			n := k.Notifier()
			done := make(chan error, 1)
			go func() {
				_, _, err := k.Do(ctx, make([]byte, 6), nil, 0)
				done <- err
			}()
			for k.InFlight() == 0 {
				// Do has not placed its entry yet.
				<-n.ch
			}
			ne.PutUint16(k.ring[hdrCmdID:], tt.id)
			storeTail(k.mem, tt.tail)
			if err := n.Kick(); err != nil {
				t.Fatal(err)
			}
			if k.Err() == nil {
				t.Fatal("Err() = nil, want the ring broken")
			}
			if err := <-done; !errors.Is(err, ErrBroken) {
				t.Errorf("Do = %v, want ErrBroken", err)
			}
			if _, err := k.Submit(ctx, make([]byte, 6), nil, 0); !errors.Is(err, ErrBroken) {
				t.Errorf("Submit = %v, want ErrBroken", err)
			}
			// A reset repairs it, like tcmu_reset_ring.
			if err := k.ResetRing(1); err != nil || k.Err() != nil || k.Tail() != 0 || head(k) != 0 {
				t.Errorf("after ResetRing: %v, %v, tail %d, head %d", err, k.Err(), k.Tail(), head(k))
			}
		})
	}
}

func TestBackPressure(t *testing.T) {
	k, err := NewKernel(Options{CmdrSize: 512}) // 4 TUR entries at most
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for range 4 {
		if _, err := k.Submit(ctx, make([]byte, 6), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if _, err := k.Submit(ctx, make([]byte, 6), nil, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Submit on a full ring = %v, want it to block until ctx is done", err)
	}
	if _, err := k.Submit(context.Background(), make([]byte, 6), nil, 1<<30); !errors.Is(err, ErrTooBig) {
		t.Errorf("Submit of 1 GiB = %v, want ErrTooBig", err)
	}
}
