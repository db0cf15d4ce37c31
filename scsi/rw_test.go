// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestReadWriteRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		write   []byte
		read    []byte
		lba, n  int
		scatter bool
	}{
		{"6", cdb6(OpWrite6, 0x1234, 3), cdb6(OpRead6, 0x1234%testBlocks, 3), 0x1234 % testBlocks, 3, false},
		{"10", cdb10(OpWrite10, 100, 8), cdb10(OpRead10, 100, 8), 100, 8, true},
		{"12", cdb12(OpWrite12, 4000, 96), cdb12(OpRead12, 4000, 96), 4000, 96, false},
		{"16", cdb16(OpWrite16, 7, 256), cdb16(OpRead16, 7, 256), 7, 256, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, mem := newDisk(t, nil)
			if tt.name == "6" {
				// 0x1234 is past the test disk; use a bigger one.
				d, mem = newDisk(t, func(c *Config) { c.Blocks = 0x2000 })
				tt.lba = 0x1234
				tt.read = cdb6(OpRead6, 0x1234, 3)
			}
			data := pattern(tt.n*512, byte(tt.n))
			bufs := [][]byte{data}
			if tt.scatter {
				bufs = [][]byte{data[:100], data[100:1000], data[1000:]}
			}
			res := mustOK(t, d, tt.write, bufs...)
			if res.Kind != KindWrite || res.Bytes != len(data) || res.DataIn != 0 || res.LBA != uint64(tt.lba) || res.Blocks != uint32(tt.n) {
				t.Errorf("write result %+v", res)
			}
			if got := mem.Bytes()[tt.lba*512 : (tt.lba+tt.n)*512]; !bytes.Equal(got, data) {
				t.Fatal("backing store does not hold the written data")
			}
			out := make([]byte, len(data))
			res = mustOK(t, d, tt.read, out[:512], out[512:])
			if res.Kind != KindRead || res.Bytes != len(data) || res.DataIn != len(data) {
				t.Errorf("read result %+v", res)
			}
			if !bytes.Equal(out, data) {
				t.Error("read data differs from written data")
			}
		})
	}
}

func TestRead6ZeroLengthIs256(t *testing.T) {
	d, _ := newDisk(t, nil)
	res := mustOK(t, d, cdb6(OpRead6, 0, 0), make([]byte, 256*512))
	if res.Blocks != 256 || res.DataIn != 256*512 {
		t.Errorf("READ(6) length 0: %+v, want 256 blocks", res)
	}
}

func TestZeroLengthTransfers(t *testing.T) {
	d, mem := newDisk(t, nil)
	for _, cdb := range [][]byte{cdb10(OpRead10, 5, 0), cdb10(OpWrite10, 5, 0), cdb16(OpWrite16, testBlocks-1, 0), cdb12(OpRead12, 0, 0)} {
		res := mustOK(t, d, cdb)
		if res.Bytes != 0 || res.DataIn != 0 {
			t.Errorf("% x: %+v", cdb, res)
		}
	}
	if mem.Syncs.Load() != 0 {
		t.Error("zero-length write synced")
	}
	// The LBA must still be valid.
	_, err := exec(t, d, cdb10(OpRead10, testBlocks, 0))
	wantErr(t, err, ErrLBAOutOfRange, -1, -1)
}

func TestRangeChecks(t *testing.T) {
	d, _ := newDisk(t, nil)
	tests := []struct {
		name       string
		cdb        []byte
		want       *Error
		field, bit int
	}{
		{"READ(10) past the end", cdb10(OpRead10, testBlocks-1, 2), ErrLBAOutOfRange, -1, -1},
		{"READ(10) LBA at capacity", cdb10(OpRead10, testBlocks, 1), ErrLBAOutOfRange, -1, -1},
		{"WRITE(16) LBA+length overflows", cdb16(OpWrite16, math.MaxUint64, 2), ErrLBAOutOfRange, -1, -1},
		{"READ(16) huge LBA", cdb16(OpRead16, 1<<63, 1), ErrLBAOutOfRange, -1, -1},
		{"READ(6) past the end", cdb6(OpRead6, testBlocks, 1), ErrLBAOutOfRange, -1, -1},
		{"READ(10) above MAXIMUM TRANSFER LENGTH", cdb10(OpRead10, 0, 257), ErrInvalidFieldInCDB, 7, 7},
		{"WRITE(12) above MAXIMUM TRANSFER LENGTH", cdb12(OpWrite12, 0, 1000), ErrInvalidFieldInCDB, 6, 7},
		{"READ(16) above MAXIMUM TRANSFER LENGTH", cdb16(OpRead16, 0, 1<<20), ErrInvalidFieldInCDB, 10, 7},
		{"VERIFY(16) past the end", cdb16(OpVerify16, testBlocks-1, 2), ErrLBAOutOfRange, -1, -1},
		{"PRE-FETCH(10) past the end", cdb10(OpPreFetch10, testBlocks, 1), ErrLBAOutOfRange, -1, -1},
		{"SYNCHRONIZE CACHE(16) past the end", cdb16(OpSynchronizeCache16, 10, testBlocks), ErrLBAOutOfRange, -1, -1},
		{"WRITE AND VERIFY(10) past the end", cdb10(OpWriteAndVerify10, testBlocks-2, 3), ErrLBAOutOfRange, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exec(t, d, tt.cdb, make([]byte, 4*512))
			wantErr(t, err, tt.want, tt.field, tt.bit)
		})
	}
	// The last block, and WRITE(6) of 256 blocks (length 0) at the
	// limit of 256, are fine.
	mustOK(t, d, cdb10(OpRead10, testBlocks-1, 1), make([]byte, 512))
	mustOK(t, d, cdb6(OpWrite6, 0, 0), make([]byte, 256*512))
}

func TestWriteSyncs(t *testing.T) {
	d, mem := newDisk(t, nil)
	buf := make([]byte, 512)
	mustOK(t, d, cdb10(OpWrite10, 0, 1), buf)
	if n := mem.Syncs.Load(); n != 0 {
		t.Fatalf("write-back WRITE synced %d times", n)
	}
	fua := cdb10(OpWrite10, 0, 1)
	fua[1] = 0x08
	mustOK(t, d, fua, buf)
	if n := mem.Syncs.Load(); n != 1 {
		t.Fatalf("FUA WRITE synced %d times, want 1", n)
	}
	d.SetWriteCache(false)
	mustOK(t, d, cdb16(OpWrite16, 0, 1), buf)
	if n := mem.Syncs.Load(); n != 2 {
		t.Fatalf("write-through WRITE synced %d times total, want 2", n)
	}
	// DPO is accepted, FUA on READ needs no sync.
	rd := cdb10(OpRead10, 0, 1)
	rd[1] = 0x18
	mustOK(t, d, rd, buf)
	mustOK(t, d, cdb10(OpSynchronizeCache10, 0, 0))
	sc := cdb16(OpSynchronizeCache16, 8, 8)
	sc[1] = 0x02 // IMMED
	mustOK(t, d, sc)
	if n := mem.Syncs.Load(); n != 4 {
		t.Errorf("syncs %d, want 4", n)
	}
}

func TestWriteProtect(t *testing.T) {
	d, mem := newDisk(t, func(c *Config) { c.ReadOnly = true })
	buf := make([]byte, 2*512)
	for _, cdb := range [][]byte{
		cdb10(OpWrite10, 0, 1), cdb6(OpWrite6, 0, 1), cdb16(OpWrite16, 0, 1), cdb12(OpWrite12, 0, 1),
		cdb10(OpWriteAndVerify10, 0, 1), cdb10(OpWriteSame10, 0, 1),
		{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
		{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0},
	} {
		_, err := exec(t, d, cdb, buf)
		wantErr(t, err, ErrWriteProtected, -1, -1)
	}
	if !bytes.Equal(mem.Bytes(), make([]byte, testBlocks*512)) {
		t.Error("a write-protected disk was written")
	}
	mustOK(t, d, cdb10(OpRead10, 0, 1), buf[:512])
	d.SetReadOnly(false)
	mustOK(t, d, cdb10(OpWrite10, 0, 1), buf[:512])
}

func TestShortAndLongBuffers(t *testing.T) {
	d, mem := newDisk(t, nil)
	// A write with less data than the CDB asks for is rejected.
	_, err := exec(t, d, cdb10(OpWrite10, 0, 4), make([]byte, 3*512))
	wantErr(t, err, ErrInvalidFieldInCDB, 7, 7)
	// More data than needed: only the CDB's blocks are written.
	data := pattern(3*512, 9)
	res := mustOK(t, d, cdb10(OpWrite10, 0, 2), data)
	if res.Bytes != 1024 || !bytes.Equal(mem.Bytes()[:1536], append(data[:1024:1024], make([]byte, 512)...)) {
		t.Errorf("overlong write: %+v", res)
	}
	// A read into a shorter buffer (an iSCSI EXPECTED DATA TRANSFER
	// LENGTH below the TRANSFER LENGTH) gets the first bytes of the
	// range, the last block in part (SAM-5: data-in is transferred in
	// order up to the buffer's end; the transport reports the overflow).
	out := bytes.Repeat([]byte{0xee}, 512+100)
	res = mustOK(t, d, cdb10(OpRead10, 0, 2), out[:300], out[300:])
	if res.DataIn != 612 || !bytes.Equal(out, data[:612]) {
		t.Errorf("short read: %+v, data[:612] equal %v", res, bytes.Equal(out, data[:612]))
	}
	out = bytes.Repeat([]byte{0xee}, 200)
	res = mustOK(t, d, cdb10(OpRead10, 1, 1), out)
	if res.DataIn != 200 || !bytes.Equal(out, data[512:712]) {
		t.Errorf("200-byte read of one block: %+v", res)
	}
	// A longer buffer gets exactly the transfer.
	out = make([]byte, 4*512)
	res = mustOK(t, d, cdb10(OpRead10, 0, 2), out[:1000], out[1000:])
	if res.DataIn != 1024 || !bytes.Equal(out[:1024], data[:1024]) {
		t.Errorf("long read: %+v", res)
	}
	// What a read does not fill is zeroed: TCMU's rsp.read_len cannot
	// say 0 bytes, so the kernel sends the whole buffer then, and it
	// must not carry stale data-area bytes.
	out = bytes.Repeat([]byte{0xee}, 4*512)
	res = mustOK(t, d, cdb10(OpRead10, 0, 2), out)
	if res.DataIn != 1024 || !bytes.Equal(out[1024:], make([]byte, 2*512)) {
		t.Errorf("long read left %x after the data", out[1024:1040])
	}
	out = bytes.Repeat([]byte{0xee}, 512)
	res = mustOK(t, d, cdb10(OpRead10, 0, 0), out)
	if res.DataIn != 0 || !bytes.Equal(out, make([]byte, 512)) {
		t.Errorf("READ with TRANSFER LENGTH 0: %+v, buffer %x", res, out[:16])
	}
	out = bytes.Repeat([]byte{0xee}, 512)
	res = mustOK(t, d, []byte{0x12, 0, 0, 0, 0xff, 0}, out)
	if res.DataIn != 74 || !bytes.Equal(out[74:], make([]byte, 512-74)) {
		t.Errorf("INQUIRY into 512 bytes: %+v, left %x", res, out[74:90])
	}
}

func TestBackendErrorsAreWrapped(t *testing.T) {
	d, mem := newDisk(t, nil)
	boom := errors.New("memdisk: boom")
	mem.FailReads(boom)
	_, err := exec(t, d, cdb10(OpRead10, 0, 1), make([]byte, 512))
	var se *Error
	if !errors.Is(err, boom) || errors.As(err, &se) {
		t.Errorf("read error = %v, want wrapped backend error", err)
	}
	mem.FailWrites(boom)
	_, err = exec(t, d, cdb10(OpWrite10, 0, 1), make([]byte, 512))
	if !errors.Is(err, boom) {
		t.Errorf("write error = %v, want wrapped backend error", err)
	}
}

func TestVerify(t *testing.T) {
	d, _ := newDisk(t, nil)
	data := pattern(4*512, 3)
	mustOK(t, d, cdb10(OpWrite10, 10, 4), data)

	// BYTCHK 00b: medium verification, no data.
	mustOK(t, d, cdb10(OpVerify10, 10, 4))
	// BYTCHK 01b: compare.
	v := cdb10(OpVerify10, 10, 4)
	v[1] = 0x02
	mustOK(t, d, v, data)
	bad := bytes.Clone(data)
	bad[1500] ^= 1
	_, err := exec(t, d, v, bad)
	se := wantErr(t, err, ErrMiscompare, -1, -1)
	if !se.InfoValid || se.Info != 1500 {
		t.Errorf("miscompare information %d (valid %v), want offset 1500", se.Info, se.InfoValid)
	}
	fixed := d.Sense(nil, se)
	if fixed[0] != 0xf0 || fixed[2] != 0x0e || be32(fixed[3:]) != 1500 || fixed[12] != 0x1d {
		t.Errorf("miscompare sense % x", fixed)
	}
	// BYTCHK 11b: one block compared with every block.
	same := pattern(512, 77)
	mustOK(t, d, cdb10(OpWrite10, 20, 1), same)
	mustOK(t, d, cdb10(OpWrite10, 21, 1), same)
	v16 := cdb16(OpVerify16, 20, 2)
	v16[1] = 0x06
	mustOK(t, d, v16, same)
	v16 = cdb16(OpVerify16, 20, 3)
	v16[1] = 0x06
	_, err = exec(t, d, v16, same)
	se = wantErr(t, err, ErrMiscompare, -1, -1)
	if se.Info != 2*512 {
		t.Errorf("BYTCHK 11b miscompare at %d, want 1024", se.Info)
	}
	// BYTCHK 10b is reserved.
	v12 := cdb12(OpVerify12, 0, 1)
	v12[1] = 0x04
	_, err = exec(t, d, v12, same)
	wantErr(t, err, ErrInvalidFieldInCDB, 1, 2)
	// Missing data for BYTCHK 01b.
	_, err = exec(t, d, v, data[:512])
	wantErr(t, err, ErrInvalidFieldInCDB, 7, 7)
}

func TestWriteAndVerify(t *testing.T) {
	d, mem := newDisk(t, nil)
	data := pattern(2*512, 5)
	wv := cdb10(OpWriteAndVerify10, 30, 2)
	wv[1] = 0x02 // BYTCHK 01b
	res := mustOK(t, d, wv, data)
	if res.Kind != KindWrite || res.Bytes != 1024 {
		t.Errorf("WRITE AND VERIFY result %+v", res)
	}
	if !bytes.Equal(mem.Bytes()[30*512:32*512], data) {
		t.Error("WRITE AND VERIFY did not write")
	}
	if mem.Syncs.Load() != 1 {
		t.Error("WRITE AND VERIFY did not write through")
	}
	mustOK(t, d, cdb16(OpWriteAndVerify16, 40, 1), data[:512])
	mustOK(t, d, cdb12(OpWriteAndVerify12, 41, 1), data[:512])
}

func TestPreFetch(t *testing.T) {
	d, _ := newDisk(t, nil)
	res := mustOK(t, d, cdb10(OpPreFetch10, 0, 100))
	if res.Kind != KindOther {
		t.Errorf("PRE-FETCH kind %v", res.Kind)
	}
	pf := cdb16(OpPreFetch16, testBlocks-1, 1)
	pf[1] = 0x02
	mustOK(t, d, pf)
}

// TestReadWriteNoAlloc is the hot path's contract: READ and WRITE whose
// buffers cover the transfer exactly do not allocate.
func TestReadWriteNoAlloc(t *testing.T) {
	d, err := NewDisk(Config{BlockSize: 512, Blocks: 1 << 20, Serial: "x", MaxTransferBlocks: 2048}, nullBackend{})
	if err != nil {
		t.Fatal(err)
	}
	buf := [][]byte{make([]byte, 4096), make([]byte, 4096)}
	for _, cdb := range [][]byte{cdb10(OpRead10, 8, 16), cdb10(OpWrite10, 8, 16), cdb16(OpRead16, 1000, 16), cdb16(OpWrite16, 1000, 16)} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := d.Execute(cdb, buf); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Execute(% x): %v allocations, want 0", cdb, allocs)
		}
	}
	// An out-of-range command returns a sentinel without allocating.
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := d.Execute(cdb10(OpRead10, 1<<20, 1), buf); !errors.Is(err, ErrLBAOutOfRange) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("out-of-range READ(10): %v allocations", allocs)
	}
}

func BenchmarkExecuteRead(b *testing.B) {
	d, _ := NewDisk(Config{BlockSize: 512, Blocks: 1 << 20, Serial: "x"}, nullBackend{})
	cdb := cdb10(OpRead10, 8, 8)
	buf := [][]byte{make([]byte, 4096)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Execute(cdb, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecuteWrite(b *testing.B) {
	d, _ := NewDisk(Config{BlockSize: 512, Blocks: 1 << 20, Serial: "x", WriteCache: true}, nullBackend{})
	cdb := cdb16(OpWrite16, 8, 8)
	buf := [][]byte{make([]byte, 4096)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Execute(cdb, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLimitsOnVerifyAndPreFetch(t *testing.T) {
	d, _ := newDisk(t, nil)
	_, err := exec(t, d, cdb16(OpVerify16, 0, 257))
	wantErr(t, err, ErrInvalidFieldInCDB, 10, 7)
	_, err = exec(t, d, cdb10(OpPreFetch10, 0, 257))
	wantErr(t, err, ErrInvalidFieldInCDB, 7, 7)
	mustOK(t, d, cdb16(OpVerify16, 0, 256))
}

func Test4KBlocks(t *testing.T) {
	d, mem := newDisk(t, func(c *Config) { c.BlockSize = 4096; c.Blocks = 64 })
	data := pattern(2*4096, 4)
	mustOK(t, d, cdb10(OpWrite10, 62, 2), data)
	if !bytes.Equal(mem.Bytes()[62*4096:], data) {
		t.Error("4K write landed in the wrong place")
	}
	_, err := exec(t, d, cdb10(OpWrite10, 63, 2), data)
	wantErr(t, err, ErrLBAOutOfRange, -1, -1)
	rc16 := mustIn(t, d, []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, 32)
	if be64(rc16) != 63 || be32(rc16[8:]) != 4096 || rc16[13] != 0 {
		t.Errorf("READ CAPACITY(16) 4K: % x", rc16[:16])
	}
}

// TestDirectDispatch checks that Execute's direct calls, which keep the
// decoded CDB off the heap, run the handler the command table names.
func TestDirectDispatch(t *testing.T) {
	direct := map[Opcode]func(*Disk, *CDB, [][]byte) (Result, error){
		OpRead6: (*Disk).read, OpRead10: (*Disk).read, OpRead12: (*Disk).read, OpRead16: (*Disk).read,
		OpWrite6: (*Disk).write, OpWrite10: (*Disk).write, OpWrite12: (*Disk).write, OpWrite16: (*Disk).write,
		OpTestUnitReady:      (*Disk).testUnitReady,
		OpSynchronizeCache10: (*Disk).synchronizeCache, OpSynchronizeCache16: (*Disk).synchronizeCache,
		OpUnmap:       (*Disk).unmap,
		OpWriteSame10: (*Disk).writeSame, OpWriteSame16: (*Disk).writeSame,
		OpVerify10: (*Disk).verify, OpVerify16: (*Disk).verify,
	}
	for op, fn := range direct {
		cmds := byOpcode[op]
		if len(cmds) != 1 {
			t.Fatalf("%v: %d table entries, want 1", op, len(cmds))
		}
		if got, want := reflect.ValueOf(cmds[0].exec).Pointer(), reflect.ValueOf(fn).Pointer(); got != want {
			t.Errorf("%v: the table and Execute call different handlers", op)
		}
	}
}

// TestSteadyStateNoAlloc extends the hot path's contract to the other
// commands of steady-state I/O. (VERIFY and WRITE SAME, also dispatched
// directly, allocate their scratch buffers.)
func TestSteadyStateNoAlloc(t *testing.T) {
	d, err := NewDisk(Config{BlockSize: 512, Blocks: 1 << 20, Serial: "x", MaxTransferBlocks: 2048, ThinProvisioning: true}, nullBackend{})
	if err != nil {
		t.Fatal(err)
	}
	unmap := make([]byte, 24)
	put16(unmap[0:], 22)
	put16(unmap[2:], 16)
	put64(unmap[8:], 64)
	put32(unmap[16:], 8)
	unmapCDB := make([]byte, 10)
	unmapCDB[0] = byte(OpUnmap)
	put16(unmapCDB[7:], 24)
	for _, tc := range []struct {
		cdb  []byte
		data [][]byte
	}{
		{make([]byte, 6), nil}, // TEST UNIT READY
		{cdb10(OpSynchronizeCache10, 0, 0), nil},
		{cdb16(OpSynchronizeCache16, 8, 16), nil},
		{unmapCDB, [][]byte{unmap}},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := d.Execute(tc.cdb, tc.data); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Execute(% x): %v allocations, want 0", tc.cdb, allocs)
		}
	}
}
