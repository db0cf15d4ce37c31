// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lunbridge/lunbridge/internal/memdisk"
)

// seedCDBs are CDBs for the fuzz corpora: every command's usage data
// (all supported bits set) and typical valid commands.
func seedCDBs() [][]byte {
	var s [][]byte
	for _, c := range commands {
		s = append(s, c.usage)
		z := make([]byte, len(c.usage))
		z[0] = c.usage[0]
		if c.flags&fSA != 0 {
			z[1] = c.sa
		}
		s = append(s, z)
	}
	return append(s,
		cdb10(OpRead10, 1, 1), cdb16(OpWrite16, 2, 2), cdb6(OpRead6, 0, 0),
		[]byte{0x12, 1, 0x83, 0, 0xff, 0}, []byte{0x1a, 0, 0x3f, 0xff, 0xff, 0},
		[]byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
		[]byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0},
		[]byte{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0},
	)
}

// FuzzParseCDB: ParseCDB never panics, fails only with *Error, and every
// decoded field fits the width of its CDB field.
func FuzzParseCDB(f *testing.F) {
	for _, c := range seedCDBs() {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, cdb []byte) {
		c, err := ParseCDB(cdb)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("ParseCDB(% x) = %v: not an *Error", cdb, err)
			}
			if se.Key != KeyIllegalRequest {
				t.Fatalf("ParseCDB(% x) = %v: not ILLEGAL REQUEST", cdb, err)
			}
			return
		}
		if c.Op != Opcode(cdb[0]) || c.Len() != cdbLen(c.Op) || c.Len() > len(cdb) {
			t.Fatalf("ParseCDB(% x): op %v len %d", cdb, c.Op, c.Len())
		}
		bitsOf := func(f field) uint { return 8 * uint(f.n) }
		cmd := c.cmd
		lbaBits, blockMax := bitsOf(cmd.lba), uint64(1)<<bitsOf(cmd.blocks)-1
		if cmd.flags&fRead6 != 0 {
			lbaBits, blockMax = 21, 256
			if c.Blocks == 0 {
				t.Fatalf("ParseCDB(% x): READ(6)/WRITE(6) with 0 blocks", cdb)
			}
		}
		if lbaBits < 64 && c.LBA>>lbaBits != 0 {
			t.Fatalf("ParseCDB(% x): LBA %#x wider than %d bits", cdb, c.LBA, lbaBits)
		}
		if uint64(c.Blocks) > blockMax {
			t.Fatalf("ParseCDB(% x): blocks %d above %d", cdb, c.Blocks, blockMax)
		}
		if n := bitsOf(cmd.length); n < 32 && c.Length>>n != 0 {
			t.Fatalf("ParseCDB(% x): length %d wider than %d bits", cdb, c.Length, n)
		}
		if cmd.flags&fSA == 0 && c.ServiceAction != 0 || c.ServiceAction > 0x1f {
			t.Fatalf("ParseCDB(% x): service action %#x", cdb, c.ServiceAction)
		}
		// Every accepted bit is in the usage data.
		for i := 1; i < c.Len(); i++ {
			allowed := cmd.usage[i]
			if i == 1 && cmd.flags&fSA != 0 {
				allowed |= 0x1f
			}
			if cdb[i]&^allowed != 0 {
				t.Fatalf("ParseCDB(% x): byte %d has bits outside % x", cdb, i, cmd.usage)
			}
		}
	})
}

const fuzzBlocks = 256

// strictBackend wraps a memory disk and fails (with an error that is not
// an *Error, so the fuzzer reports it) on any offset or length that is not
// a whole number of blocks: Disk promises the Backend aligned ranges.
type strictBackend struct {
	*memdisk.Disk
	bs int64
}

func (s strictBackend) check(off, n int64) error {
	if off%s.bs != 0 || n%s.bs != 0 || off < 0 || n < 0 {
		return fmt.Errorf("strict backend: unaligned range [%d, +%d)", off, n)
	}
	return nil
}

func (s strictBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	if err := s.check(off, int64(bufLen(bufs))); err != nil {
		return 0, err
	}
	return s.Disk.ReadAt(bufs, off)
}

func (s strictBackend) WriteAt(bufs [][]byte, off int64) (int, error) {
	if err := s.check(off, int64(bufLen(bufs))); err != nil {
		return 0, err
	}
	return s.Disk.WriteAt(bufs, off)
}

func (s strictBackend) Sync(off, n int64) error {
	if err := s.check(off, n); err != nil {
		return err
	}
	return s.Disk.Sync(off, n)
}

func (s strictBackend) Unmap(off, n int64) error {
	if err := s.check(off, n); err != nil {
		return err
	}
	return s.Disk.Unmap(off, n)
}

func (s strictBackend) WriteZeroes(off, n int64) error {
	if err := s.check(off, n); err != nil {
		return err
	}
	return s.Disk.WriteZeroes(off, n)
}

func (s strictBackend) Mapped(off int64) (bool, int64, error) {
	if err := s.check(off, 0); err != nil {
		return false, 0, err
	}
	return s.Disk.Mapped(off)
}

// FuzzExecute runs a random CDB with a random data-out buffer (also used
// as the data-in buffer) on a small thin disk: no panic, every error is an
// *Error (the backend, which rejects anything unaligned or outside the
// disk, is never handed a bad range), DataIn fits the buffers, and sense data formats.
func FuzzExecute(f *testing.F) {
	for _, c := range seedCDBs() {
		f.Add(c, []byte{}, false)
		f.Add(c, make([]byte, 1024), true)
	}
	f.Add([]byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, unmapList([2]uint64{1, 2}), false)
	f.Add([]byte{0x55, 0x10, 0, 0, 0, 0, 0, 0, 28, 0}, modeSelectList(nil, []byte{0x08, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), true)
	f.Fuzz(func(t *testing.T, cdb, param []byte, dsense bool) {
		mem := memdisk.New(fuzzBlocks*512, 512)
		d, err := NewDisk(Config{
			BlockSize: 512, Blocks: fuzzBlocks, Serial: "fuzz", WriteCache: true,
			MaxTransferBlocks: 64, ThinProvisioning: true, KernelPR: true,
			MaxUnmapBlocks: 128, MaxUnmapDescriptors: 8, MaxWriteSameBlocks: 128,
		}, strictBackend{mem, 512})
		if err != nil {
			t.Fatal(err)
		}
		d.dsense.Store(dsense)
		var bufs [][]byte
		if len(param) > 0 {
			half := len(param) / 2
			bufs = [][]byte{param[:half], param[half:]}
		}
		res, err := d.Execute(cdb, bufs)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Execute(% x) = %v: not an *Error", cdb, err)
			}
			// Response code 70h (fixed) or 72h (descriptor); in fixed
			// format bit 7 is VALID, set when INFORMATION holds a value
			// (a MISCOMPARE's offset, for one).
			s := d.Sense(nil, se)
			if len(s) < 8 || (s[0]&0x7f != 0x70 && s[0] != 0x72) {
				t.Fatalf("Sense(%v) = % x", se, s)
			}
		}
		if res.DataIn < 0 || res.DataIn > len(param) {
			t.Fatalf("Execute(% x): DataIn %d with %d bytes of buffers", cdb, res.DataIn, len(param))
		}
	})
}
