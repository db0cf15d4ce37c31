// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lunbridge/lunbridge/internal/memdisk"
)

func writeSame16(lba uint64, n uint32, flags byte) []byte {
	b := cdb16(OpWriteSame16, lba, n)
	b[1] = flags
	return b
}

func TestWriteSame(t *testing.T) {
	d, mem := newDisk(t, nil)
	blk := pattern(512, 42)
	res := mustOK(t, d, cdb10(OpWriteSame10, 100, 300), blk)
	if res.Kind != KindWriteSame || res.Bytes != 300*512 {
		t.Errorf("WRITE SAME(10) result %+v", res)
	}
	got := mem.Bytes()
	for i := 100; i < 400; i++ {
		if !bytes.Equal(got[i*512:(i+1)*512], blk) {
			t.Fatalf("block %d not written", i)
		}
	}
	if !bytes.Equal(got[400*512:401*512], make([]byte, 512)) {
		t.Error("WRITE SAME wrote past its range")
	}

	// UNMAP with a zero block deallocates (LBPRZ=1).
	res = mustOK(t, d, writeSame16(100, 8, 0x08), make([]byte, 512))
	if res.Kind != KindUnmap || mem.Unmaps.Load() != 1 || mem.IsMapped(100*512) {
		t.Errorf("WRITE SAME(16) UNMAP: %+v, unmaps %d", res, mem.Unmaps.Load())
	}
	// NDOB + UNMAP needs no data.
	mustOK(t, d, writeSame16(200, 8, 0x09))
	if mem.IsMapped(200*512) || !bytes.Equal(mem.Bytes()[200*512:208*512], make([]byte, 8*512)) {
		t.Error("NDOB UNMAP did not deallocate to zeros")
	}
	// UNMAP with a non-zero block writes it.
	mustOK(t, d, writeSame16(300, 2, 0x08), blk)
	if !bytes.Equal(mem.Bytes()[301*512:302*512], blk) {
		t.Error("WRITE SAME UNMAP with data did not write it")
	}
	// Zeros without UNMAP use WriteZeroes and stay mapped.
	mustOK(t, d, writeSame16(300, 2, 0x01))
	if mem.Zeroes.Load() != 1 || !mem.IsMapped(300*512) || !bytes.Equal(mem.Bytes()[300*512:302*512], make([]byte, 1024)) {
		t.Error("NDOB without UNMAP did not write zeros")
	}
}

func TestWriteSameErrors(t *testing.T) {
	d, _ := newDisk(t, nil)
	blk := make([]byte, 512)
	tests := []struct {
		name       string
		cdb        []byte
		data       []byte
		want       *Error
		field, bit int
	}{
		{"zero blocks (WSNZ)", cdb10(OpWriteSame10, 0, 0), blk, ErrInvalidFieldInCDB, 7, 7},
		{"above MAXIMUM WRITE SAME LENGTH", writeSame16(0, 2049, 0), blk, ErrInvalidFieldInCDB, 10, 7},
		{"past the end", writeSame16(testBlocks-1, 2, 0), blk, ErrLBAOutOfRange, -1, -1},
		// SBC-4: the Data-Out Buffer is exactly one block; any other
		// length (the iSCSI expected data transfer length) is
		// INVALID FIELD IN COMMAND INFORMATION UNIT (SPC-5), no field
		// pointer: the CDB is right.
		{"no data", writeSame16(0, 1, 0), nil, ErrInvalidFieldInCmdIU, -1, -1},
		{"half a block", writeSame16(0, 1, 0), blk[:256], ErrInvalidFieldInCmdIU, -1, -1},
		{"two blocks", writeSame16(0, 1, 0), make([]byte, 1024), ErrInvalidFieldInCmdIU, -1, -1},
		{"WRITE SAME(10) two blocks", cdb10(OpWriteSame10, 0, 1), make([]byte, 1024), ErrInvalidFieldInCmdIU, -1, -1},
		{"NDOB with data", writeSame16(0, 1, 0x01), blk, ErrInvalidFieldInCmdIU, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exec(t, d, tt.cdb, tt.data)
			wantErr(t, err, tt.want, tt.field, tt.bit)
		})
	}
	full, _ := newDisk(t, func(c *Config) { c.ThinProvisioning = false })
	_, err := exec(t, full, writeSame16(0, 1, 0x08), blk)
	wantErr(t, err, ErrInvalidFieldInCDB, 1, 3)
	// Without a Zeroer, zeros are written from a buffer.
	d2, err := NewDisk(Config{BlockSize: 4096, Blocks: 16, Serial: "s"}, plainBackend{mem: make([]byte, 16*4096)})
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, d2, writeSame16(1, 3, 0x01))
}

// plainBackend is a Backend without WriteZeroes.
type plainBackend struct{ mem []byte }

func (p plainBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	n := 0
	for _, b := range bufs {
		n += copy(b, p.mem[off+int64(n):])
	}
	return n, nil
}

func (p plainBackend) WriteAt(bufs [][]byte, off int64) (int, error) {
	n := 0
	for _, b := range bufs {
		n += copy(p.mem[off+int64(n):], b)
	}
	return n, nil
}
func (plainBackend) Sync(off, n int64) error               { return nil }
func (plainBackend) Unmap(off, n int64) error              { return nil }
func (plainBackend) Mapped(off int64) (bool, int64, error) { return true, 1 << 40, nil }

// unmapList builds an UNMAP parameter list (SBC-4).
func unmapList(descs ...[2]uint64) []byte {
	p := make([]byte, 8+16*len(descs))
	put16(p[0:], uint16(len(p)-2))
	put16(p[2:], uint16(16*len(descs)))
	for i, d := range descs {
		put64(p[8+16*i:], d[0])
		put32(p[16+16*i:], uint32(d[1]))
	}
	return p
}

func unmapCDB(n int) []byte { return []byte{0x42, 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n), 0} }

func TestUnmap(t *testing.T) {
	d, mem := newDisk(t, nil)
	mustOK(t, d, cdb16(OpWrite16, 0, 64), pattern(64*512, 1))
	p := unmapList([2]uint64{0, 8}, [2]uint64{16, 16}, [2]uint64{40, 0})
	res := mustOK(t, d, unmapCDB(len(p)), p)
	if res.Kind != KindUnmap || res.Blocks != 24 {
		t.Errorf("UNMAP result %+v", res)
	}
	for _, c := range []struct {
		lba    int64
		mapped bool
	}{{0, false}, {7, false}, {8, true}, {16, false}, {31, false}, {32, true}, {40, true}} {
		if got := mem.IsMapped(c.lba * 512); got != c.mapped {
			t.Errorf("LBA %d mapped = %v, want %v", c.lba, got, c.mapped)
		}
	}
	if !bytes.Equal(mem.Bytes()[:8*512], make([]byte, 8*512)) {
		t.Error("unmapped blocks do not read as zeros")
	}
	// PARAMETER LIST LENGTH 0: nothing.
	mustOK(t, d, unmapCDB(0))
	// A truncated last descriptor is ignored.
	p = unmapList([2]uint64{8, 1})
	p = append(p, 1, 2, 3)
	put16(p[2:], 16+3)
	mustOK(t, d, unmapCDB(len(p)), p)
}

func TestUnmapErrors(t *testing.T) {
	d, mem := newDisk(t, nil)
	mustOK(t, d, cdb16(OpWrite16, 0, 64), pattern(64*512, 1))
	reserved := unmapList([2]uint64{0, 1})
	reserved[8+12] = 1
	tests := []struct {
		name       string
		list       []byte
		length     int
		want       *Error
		field, bit int
	}{
		{"length below 8", make([]byte, 7), 7, ErrParamListLengthError, -1, -1},
		{"descriptor data beyond the list", unmapList([2]uint64{0, 1})[:20], 20, ErrParamListLengthError, -1, -1},
		{"too many descriptors", unmapList([2]uint64{0, 1}, [2]uint64{1, 1}, [2]uint64{2, 1}, [2]uint64{3, 1}, [2]uint64{4, 1}), -1, ErrInvalidFieldInParamList, 2, 7},
		{"too many blocks", unmapList([2]uint64{0, 1000}, [2]uint64{1000, 25}), -1, ErrInvalidFieldInParamList, 8 + 16 + 8, 7},
		{"past the end", unmapList([2]uint64{0, 1}, [2]uint64{testBlocks - 1, 2}), -1, ErrLBAOutOfRange, -1, -1},
		{"overflow", unmapList([2]uint64{1<<64 - 1, 2}), -1, ErrLBAOutOfRange, -1, -1},
		{"reserved descriptor bytes", reserved, -1, ErrInvalidFieldInParamList, 8 + 12, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.length
			if n < 0 {
				n = len(tt.list)
			}
			_, err := exec(t, d, unmapCDB(n), tt.list)
			wantErr(t, err, tt.want, tt.field, tt.bit)
			if !mem.IsMapped(0) {
				t.Error("a rejected UNMAP deallocated blocks")
			}
		})
	}
	full, _ := newDisk(t, func(c *Config) { c.ThinProvisioning = false })
	_, err := exec(t, full, unmapCDB(24), unmapList([2]uint64{0, 1}))
	wantErr(t, err, ErrInvalidOpcode, -1, -1)
}

func getLBAStatus(lba uint64, alloc uint32) []byte {
	b := cdb16(OpServiceActionIn16, lba, alloc)
	b[1] = SAGetLBAStatus
	return b
}

func TestGetLBAStatus(t *testing.T) {
	d, _ := newDisk(t, nil)
	mustOK(t, d, cdb10(OpWrite10, 10, 5), make([]byte, 5*512))
	mustOK(t, d, cdb10(OpWrite10, 100, 1), make([]byte, 512))
	b := mustIn(t, d, getLBAStatus(0, 4096), 4096)
	// SBC-4: header, then descriptors LBA, count, status.
	type ext struct {
		lba    uint64
		n      uint32
		status byte
	}
	want := []ext{{0, 10, 1}, {10, 5, 0}, {15, 85, 1}, {100, 1, 0}, {101, testBlocks - 101, 1}}
	if int(be32(b)) != len(b)-4 || len(b) != 8+16*len(want) {
		t.Fatalf("GET LBA STATUS: % x", b)
	}
	for i, w := range want {
		e := b[8+16*i:]
		got := ext{be64(e), be32(e[8:]), e[12]}
		if got != w {
			t.Errorf("descriptor %d = %+v, want %+v", i, got, w)
		}
	}
	// From LBA 12, with room for two descriptors.
	b = mustIn(t, d, getLBAStatus(12, 8+32), 4096)
	if len(b) != 40 || be64(b[8:]) != 12 || be32(b[16:]) != 3 || b[20] != 0 || be64(b[24:]) != 15 {
		t.Errorf("GET LBA STATUS from 12: % x", b)
	}
	_, err := exec(t, d, getLBAStatus(testBlocks, 64), make([]byte, 64))
	wantErr(t, err, ErrLBAOutOfRange, -1, -1)
	full, _ := newDisk(t, func(c *Config) { c.ThinProvisioning = false })
	_, err = exec(t, full, getLBAStatus(0, 64), make([]byte, 64))
	wantErr(t, err, ErrInvalidOpcode, -1, -1)
}

func cawCDB(lba uint64, n byte) []byte {
	b := make([]byte, 16)
	b[0] = byte(OpCompareAndWrite)
	put64(b[2:], lba)
	b[13] = n
	return b
}

func TestCompareAndWrite(t *testing.T) {
	d, mem := newDisk(t, nil)
	old := pattern(2*512, 1)
	mustOK(t, d, cdb10(OpWrite10, 50, 2), old)
	nw := pattern(2*512, 2)
	res := mustOK(t, d, cawCDB(50, 2), old[:700], append(old[700:], nw...))
	if res.Kind != KindCompareAndWrite || res.Bytes != 1024 || !bytes.Equal(mem.Bytes()[50*512:52*512], nw) {
		t.Fatalf("COMPARE AND WRITE: %+v", res)
	}
	// Now the verify data is stale: MISCOMPARE with the offset.
	_, err := exec(t, d, cawCDB(50, 2), append(bytes.Clone(old), nw...))
	se := wantErr(t, err, ErrMiscompare, -1, -1)
	if !se.InfoValid || se.Info != uint64(mismatch(nw, old)) {
		t.Errorf("miscompare info %d, want %d", se.Info, mismatch(nw, old))
	}
	if !bytes.Equal(mem.Bytes()[50*512:52*512], nw) {
		t.Error("a miscompared COMPARE AND WRITE wrote")
	}
	mustOK(t, d, cawCDB(50, 0)) // 0 blocks: nothing
	_, err = exec(t, d, cawCDB(0, 129), make([]byte, 2*129*512))
	wantErr(t, err, ErrInvalidFieldInCDB, 13, 7)
	_, err = exec(t, d, cawCDB(testBlocks-1, 2), make([]byte, 4*512))
	wantErr(t, err, ErrLBAOutOfRange, -1, -1)
	// SBC-4: the Data-Out Buffer is the verify and the write data,
	// NUMBER OF LOGICAL BLOCKS each. Any other length is ILLEGAL REQUEST
	// (not a MISCOMPARE), and nothing is written.
	before := bytes.Clone(mem.Bytes()[:4*512])
	for _, tc := range []struct {
		blocks uint8
		data   int
	}{{2, 3 * 512}, {1, 4 * 512}, {3, 4 * 512}, {1, 0}, {0, 2 * 512}} {
		_, err = exec(t, d, cawCDB(0, tc.blocks), make([]byte, tc.data))
		wantErr(t, err, ErrInvalidFieldInCmdIU, -1, -1)
	}
	if !bytes.Equal(mem.Bytes()[:4*512], before) {
		t.Error("a COMPARE AND WRITE with the wrong data-out length wrote")
	}
}

// TestCompareAndWriteDataOutSize: SBC-4 (COMPARE AND WRITE) has the
// Data-Out Buffer hold the verify instance data, NUMBER OF LOGICAL BLOCKS
// logical blocks of it, followed by the write instance data, as many
// again: exactly 2 x NUMBER OF LOGICAL BLOCKS x the logical block length,
// and none at all for a NUMBER OF LOGICAL BLOCKS of zero, which specifies
// that no logical blocks are transferred or compared. A buffer of any
// other length does not describe the command: it is ILLEGAL REQUEST,
// INVALID FIELD IN COMMAND INFORMATION UNIT (05/0E/03, what LIO answers
// for a data-out length that differs from the one the CDB implies,
// fileio included), found before anything is read or compared, so never
// MISCOMPARE (0E/1D/00), and nothing is written. Each shape is tried with
// verify data that matches the medium (a size check after the compare
// would write) and with verify data that does not (it would miscompare),
// in one buffer and split across iovecs as TCMU hands them over.
func TestCompareAndWriteDataOutSize(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		d, mem := newDisk(t, func(c *Config) { c.BlockSize = uint32(bs); c.Blocks = 64 })
		const lba = 8
		old := pattern(8*bs, 5)
		mustOK(t, d, cdb10(OpWrite10, lba, 8), old)
		for _, blocks := range []int{0, 1, 3} {
			n := blocks * bs
			for _, tc := range []struct {
				name string
				len  int
			}{
				{"empty", 0},
				{"one byte", 1},
				{"verify data only", n},
				{"one byte short", 2*n - 1},
				{"one block short", 2*n - bs},
				{"odd: one byte long", 2*n + 1},
				{"odd: half a block long", 2*n + bs/2},
				{"one block long", 2*n + bs},
				{"three times", 3 * n},
				{"four times", 4 * n},
			} {
				if tc.len == 2*n || tc.len < 0 {
					continue // the one right size, or no such shape
				}
				for _, match := range []bool{false, true} {
					buf := pattern(tc.len, 9)
					if match {
						copy(buf, old[:min(n, tc.len)])
					}
					for _, split := range []bool{false, true} {
						data := [][]byte{buf}
						if split && tc.len > 1 {
							data = [][]byte{buf[:tc.len/3], buf[tc.len/3:]}
						}
						_, err := d.Execute(cawCDB(lba, byte(blocks)), data)
						if !errors.Is(err, ErrInvalidFieldInCmdIU) {
							t.Errorf("block size %d, NUMBER OF LOGICAL BLOCKS %d, %s (%d bytes, verify data matches %v, split %v) = %v, want %v",
								bs, blocks, tc.name, tc.len, match, split, err, ErrInvalidFieldInCmdIU)
						}
						if !bytes.Equal(mem.Bytes()[lba*bs:(lba+8)*bs], old) {
							t.Fatalf("block size %d, NUMBER OF LOGICAL BLOCKS %d, %s: the medium changed", bs, blocks, tc.name)
						}
					}
				}
			}
		}
		// The right size still works: matching verify data, then write.
		nw := pattern(bs, 7)
		mustOK(t, d, cawCDB(lba, 1), append(bytes.Clone(old[:bs]), nw...))
		if !bytes.Equal(mem.Bytes()[lba*bs:(lba+1)*bs], nw) {
			t.Errorf("block size %d: a matching COMPARE AND WRITE did not write", bs)
		}
	}
}

// yieldBackend yields the processor inside every read, widening the
// window between the compare and the write of a non-atomic CAW.
type yieldBackend struct{ *memdisk.Disk }

func (y yieldBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	n, err := y.Disk.ReadAt(bufs, off)
	runtime.Gosched()
	return n, err
}

// TestCompareAndWriteAtomic runs concurrent COMPARE AND WRITE increments
// of a counter block, each from the value it read, alongside plain writes
// to a neighbouring block. If compare and write were not atomic, two
// increments from the same value would both succeed and the counter would
// end below the number of successes.
func TestCompareAndWriteAtomic(t *testing.T) {
	mem := memdisk.New(64*512, 512)
	d, err := NewDisk(Config{BlockSize: 512, Blocks: 64, Serial: "s"}, yieldBackend{mem})
	if err != nil {
		t.Fatal(err)
	}
	counter := func(v uint16) []byte {
		b := make([]byte, 512)
		put16(b, v)
		return b
	}
	mustOK(t, d, cdb10(OpWrite10, 7, 1), counter(0))
	var wg sync.WaitGroup
	var wins atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := 0; i < 300; i++ {
				if _, err := d.Execute(cdb10(OpRead10, 7, 1), [][]byte{buf}); err != nil {
					t.Error(err)
					return
				}
				v := be16(buf)
				_, err := d.Execute(cawCDB(7, 1), [][]byte{counter(v), counter(v + 1)})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, ErrMiscompare):
					t.Error(err)
					return
				}
				if _, err := d.Execute(cdb10(OpWrite10, 8, 1), [][]byte{counter(uint16(i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := be16(mem.Bytes()[7*512:])
	if int64(got) != wins.Load() {
		t.Errorf("counter %d after %d successful COMPARE AND WRITEs", got, wins.Load())
	}
	if wins.Load() == 0 {
		t.Error("no COMPARE AND WRITE succeeded")
	}
}
