// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/lunbridge/lunbridge/internal/memdisk"
)

// nowaitMem is a memory backend with ReadAtNowait, which serves reads
// unless block is set, and counts its calls.
type nowaitMem struct {
	*memdisk.Disk
	block atomic.Bool
	calls atomic.Int32
}

func (m *nowaitMem) ReadAtNowait(bufs [][]byte, off int64) (int, error) {
	m.calls.Add(1)
	if m.block.Load() {
		// A would-block read may leave part of the data behind.
		if len(bufs) > 0 && len(bufs[0]) > 0 {
			bufs[0][0] = 0xee
		}
		return 0, ErrWouldBlock
	}
	return m.Disk.ReadAt(bufs, off)
}

// plainMem hides nowaitMem's ReadAtNowait: a Backend without it.
type plainMem struct{ *memdisk.Disk }

// newNowaitDisk is newDisk over a nowaitMem holding a pattern, with an
// ALUA provider (active/optimized until set otherwise).
func newNowaitDisk(t *testing.T, plain bool) (*Disk, *nowaitMem, *fakeALUA) {
	t.Helper()
	a := &fakeALUA{local: LocalPort{Group: 1, RelativePort: 1}}
	m := &nowaitMem{Disk: memdisk.New(testBlocks*512, 512)}
	if _, err := m.WriteAt([][]byte{pattern(testBlocks*512, 3)}, 0); err != nil {
		t.Fatal(err)
	}
	var be Backend = m
	if plain {
		be = plainMem{m.Disk}
	}
	d, err := NewDisk(Config{
		BlockSize: 512, Blocks: testBlocks, WriteCache: true, Serial: "x",
		MaxTransferBlocks: 256, ALUA: a,
	}, be)
	if err != nil {
		t.Fatal(err)
	}
	return d, m, a
}

// TestTryRead runs commands through TryRead: each either returns
// ErrWouldBlock having called no backend read it should not have and
// consumed no unit attention, or gives exactly what Execute gives on an
// identical disk (result, error, data).
func TestTryRead(t *testing.T) {
	buf := func(n int) [][]byte { return [][]byte{make([]byte, n)} }
	split := func(n ...int) [][]byte {
		var b [][]byte
		for _, k := range n {
			b = append(b, make([]byte, k))
		}
		return b
	}
	reserved := cdb10(OpRead10, 0, 1)
	reserved[1] = 0x01 // obsolete bit 0: not in the usage data
	for _, tc := range []struct {
		name    string
		plain   bool // the backend has no ReadAtNowait
		setup   func(d *Disk, m *nowaitMem, a *fakeALUA)
		cdb     []byte
		data    [][]byte
		block   bool // ErrWouldBlock expected
		backend int32
	}{
		{name: "READ(10) hit", cdb: cdb10(OpRead10, 8, 8), data: buf(4096), backend: 1},
		{name: "READ(6) hit", cdb: cdb6(OpRead6, 1, 2), data: buf(1024), backend: 1},
		{name: "READ(6) 256 blocks", cdb: cdb6(OpRead6, 0, 0), data: buf(256 * 512), backend: 1},
		{name: "READ(12) hit", cdb: cdb12(OpRead12, 100, 3), data: split(512, 1024), backend: 1},
		{name: "READ(16) hit", cdb: cdb16(OpRead16, testBlocks-4, 4), data: split(512, 512, 1024), backend: 1},
		{name: "backend would block", setup: func(_ *Disk, m *nowaitMem, _ *fakeALUA) { m.block.Store(true) },
			cdb: cdb10(OpRead10, 8, 8), data: buf(4096), block: true, backend: 1},
		{name: "backend without nowait", plain: true, cdb: cdb10(OpRead10, 8, 8), data: buf(4096), block: true},
		{name: "backend error", setup: func(_ *Disk, m *nowaitMem, _ *fakeALUA) { m.FailReads(errors.New("memdisk: boom")) },
			cdb: cdb10(OpRead10, 8, 8), data: buf(4096), backend: 1},
		{name: "unit attention pending", setup: func(d *Disk, _ *nowaitMem, _ *fakeALUA) {
			if err := d.SetCapacity(testBlocks - 8); err != nil {
				t.Fatal(err)
			}
		}, cdb: cdb10(OpRead10, 8, 8), data: buf(4096), block: true},
		{name: "longer buffers", cdb: cdb10(OpRead10, 8, 8), data: buf(4096 + 512), block: true},
		{name: "shorter buffers", cdb: cdb10(OpRead10, 8, 8), data: buf(4096 - 512), block: true},
		{name: "WRITE(10)", cdb: cdb10(OpWrite10, 8, 8), data: buf(4096), block: true},
		{name: "TEST UNIT READY", cdb: make([]byte, 6), block: true},
		{name: "no CDB", block: true},
		{name: "transfer length 0", cdb: cdb10(OpRead10, 8, 0), data: buf(512)},
		{name: "out of range", cdb: cdb10(OpRead10, testBlocks-1, 2), data: buf(1024)},
		{name: "past the maximum transfer", cdb: cdb10(OpRead10, 0, 257), data: buf(257 * 512)},
		{name: "reserved bit", cdb: reserved, data: buf(512)},
		{name: "offline", setup: func(d *Disk, _ *nowaitMem, _ *fakeALUA) { d.SetOnline(false) },
			cdb: cdb10(OpRead10, 8, 8), data: buf(4096)},
		{name: "stopped", setup: func(d *Disk, _ *nowaitMem, _ *fakeALUA) { d.stopped.Store(true) },
			cdb: cdb10(OpRead10, 8, 8), data: buf(4096)},
		{name: "ALUA standby", setup: func(_ *Disk, _ *nowaitMem, a *fakeALUA) { a.set(StateStandby) },
			cdb: cdb10(OpRead10, 8, 8), data: buf(4096)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, m, a := newNowaitDisk(t, tc.plain)
			ref, rm, ra := newNowaitDisk(t, tc.plain)
			if tc.setup != nil {
				tc.setup(d, m, a)
				tc.setup(ref, rm, ra)
			}
			res, err := d.TryRead(tc.cdb, tc.data)
			if got := m.calls.Load(); got != tc.backend {
				t.Errorf("TryRead(% x): %d ReadAtNowait calls, want %d", tc.cdb, got, tc.backend)
			}
			if tc.block {
				if !errors.Is(err, ErrWouldBlock) || res != (Result{}) {
					t.Fatalf("TryRead(% x) = %+v, %v, want ErrWouldBlock", tc.cdb, res, err)
				}
				if tc.name == "unit attention pending" {
					if _, err := d.Execute(tc.cdb, tc.data); !errors.Is(err, ErrCapacityChanged) {
						t.Errorf("Execute after TryRead = %v, want the unit attention %v", err, ErrCapacityChanged)
					}
				}
				return
			}
			if errors.Is(err, ErrWouldBlock) {
				t.Fatalf("TryRead(% x) = ErrWouldBlock, want Execute's outcome", tc.cdb)
			}
			want := make([][]byte, len(tc.data))
			for i := range tc.data {
				want[i] = make([]byte, len(tc.data[i]))
			}
			wres, werr := ref.Execute(tc.cdb, want)
			if res != wres {
				t.Errorf("TryRead(% x) = %+v, want %+v", tc.cdb, res, wres)
			}
			if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
				t.Errorf("TryRead(% x) error %v, want %v", tc.cdb, err, werr)
			}
			for i := range want {
				if !bytes.Equal(tc.data[i], want[i]) {
					t.Errorf("TryRead(% x): buffer %d differs from Execute's", tc.cdb, i)
				}
			}
		})
	}
}

// TestTryReadNoAlloc: a read TryRead serves allocates nothing, as
// Execute's; so does one that would block.
func TestTryReadNoAlloc(t *testing.T) {
	d, m, _ := newNowaitDisk(t, false)
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048)}
	cdb := cdb16(OpRead16, 64, 8)
	for _, block := range []bool{false, true} {
		m.block.Store(block)
		allocs := testing.AllocsPerRun(100, func() {
			_, err := d.TryRead(cdb, bufs)
			if block != errors.Is(err, ErrWouldBlock) {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("TryRead (would block: %v): %v allocations, want 0", block, allocs)
		}
	}
}

// FuzzTryRead runs a random CDB with random buffers through TryRead and,
// on a twin disk, Execute: TryRead either would block, without touching
// the backend or the unit attention, or gives Execute's result, error and
// data.
func FuzzTryRead(f *testing.F) {
	for _, c := range seedCDBs() {
		f.Add(c, uint16(0), uint16(0), false)
		f.Add(c, uint16(512), uint16(3584), true)
	}
	f.Add(cdb10(OpRead10, 1, 8), uint16(1024), uint16(3072), false)
	f.Add(cdb6(OpRead6, 2, 1), uint16(512), uint16(0), true)
	f.Fuzz(func(t *testing.T, cdb []byte, a, b uint16, ua bool) {
		var ds [2]*Disk
		var ms [2]*nowaitMem
		for i := range ds {
			ds[i], ms[i], _ = newNowaitDisk(t, false)
			if ua {
				ds[i].raise(ErrCapacityChanged)
			}
		}
		bufs := func() [][]byte { return [][]byte{make([]byte, a%8192), make([]byte, b%8192)} }
		got, want := bufs(), bufs()
		res, err := ds[0].TryRead(cdb, got)
		if errors.Is(err, ErrWouldBlock) {
			if res != (Result{}) || ms[0].calls.Load() > 1 || ua && ds[0].ua.Load() == 0 {
				t.Fatalf("TryRead(% x) would block with %+v, %d backend calls, unit attention taken: %v",
					cdb, res, ms[0].calls.Load(), ua && ds[0].ua.Load() == 0)
			}
			return
		}
		wres, werr := ds[1].Execute(cdb, want)
		if res != wres || (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("TryRead(% x) = %+v, %v; Execute = %+v, %v", cdb, res, err, wres, werr)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("TryRead(% x): buffer %d differs from Execute's", cdb, i)
			}
		}
	})
}
