// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"errors"
	"fmt"
	"testing"
)

// TestBlockLimitsEnforced checks every length limit the Block Limits VPD
// page (SBC-4, page B0h) advertises against what each command it governs
// accepts: a command at the limit is not rejected for its length, one
// block more is ILLEGAL REQUEST, INVALID FIELD IN CDB (or, for UNMAP,
// INVALID FIELD IN PARAMETER LIST). The limits are read from the page,
// not from the Config, so the page and the checks cannot drift apart.
// SBC-4 names, per field: MAXIMUM TRANSFER LENGTH for READ, WRITE, VERIFY
// and WRITE AND VERIFY; MAXIMUM PREFETCH LENGTH for PRE-FETCH; MAXIMUM
// COMPARE AND WRITE LENGTH; MAXIMUM WRITE SAME LENGTH; MAXIMUM UNMAP LBA
// COUNT and MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT for UNMAP.
func TestBlockLimitsEnforced(t *testing.T) {
	d, _ := newDisk(t, func(c *Config) {
		c.MaxTransferBlocks = 24
		c.MaxWriteSameBlocks = 40
		c.MaxUnmapBlocks = 48
		c.MaxUnmapDescriptors = 3
	})
	p := mustIn(t, d, []byte{0x12, 0x01, 0xb0, 0, 0xff, 0}, 255)
	if len(p) != 0x40 || p[1] != 0xb0 {
		t.Fatalf("Block Limits VPD page = % x", p)
	}
	maxXfer := be32(p[8:])
	maxPrefetch := be32(p[16:])
	maxCAW := uint32(p[5])
	maxWS := uint32(be64(p[36:]))
	maxUnmap := be32(p[20:])
	maxUnmapDescs := int(be32(p[24:]))
	if maxXfer != 24 || maxPrefetch == 0 || maxCAW == 0 || maxWS != 40 || maxUnmap != 48 || maxUnmapDescs != 3 {
		t.Fatalf("limits: transfer %d, prefetch %d, CAW %d, write same %d, unmap %d/%d",
			maxXfer, maxPrefetch, maxCAW, maxWS, maxUnmap, maxUnmapDescs)
	}
	bs := 512
	type cmd struct {
		name  string
		limit uint32
		cdb   func(n uint32) []byte
		data  func(n uint32) []byte // data-out for n blocks, or nil
	}
	blocks := func(n uint32) []byte { return make([]byte, int(n)*bs) }
	cmds := []cmd{
		{"READ(10)", maxXfer, func(n uint32) []byte { return cdb10(OpRead10, 0, uint16(n)) }, nil},
		{"READ(12)", maxXfer, func(n uint32) []byte { return cdb12(OpRead12, 0, n) }, nil},
		{"READ(16)", maxXfer, func(n uint32) []byte { return cdb16(OpRead16, 0, n) }, nil},
		{"WRITE(10)", maxXfer, func(n uint32) []byte { return cdb10(OpWrite10, 0, uint16(n)) }, blocks},
		{"WRITE(12)", maxXfer, func(n uint32) []byte { return cdb12(OpWrite12, 0, n) }, blocks},
		{"WRITE(16)", maxXfer, func(n uint32) []byte { return cdb16(OpWrite16, 0, n) }, blocks},
		{"WRITE AND VERIFY(10)", maxXfer, func(n uint32) []byte { return cdb10(OpWriteAndVerify10, 0, uint16(n)) }, blocks},
		{"WRITE AND VERIFY(12)", maxXfer, func(n uint32) []byte { return cdb12(OpWriteAndVerify12, 0, n) }, blocks},
		{"WRITE AND VERIFY(16)", maxXfer, func(n uint32) []byte { return cdb16(OpWriteAndVerify16, 0, n) }, blocks},
		{"VERIFY(10)", maxXfer, func(n uint32) []byte { return cdb10(OpVerify10, 0, uint16(n)) }, nil},
		{"VERIFY(12)", maxXfer, func(n uint32) []byte { return cdb12(OpVerify12, 0, n) }, nil},
		{"VERIFY(16)", maxXfer, func(n uint32) []byte { return cdb16(OpVerify16, 0, n) }, nil},
		{"PRE-FETCH(10)", maxPrefetch, func(n uint32) []byte { return cdb10(OpPreFetch10, 0, uint16(n)) }, nil},
		{"PRE-FETCH(16)", maxPrefetch, func(n uint32) []byte { return cdb16(OpPreFetch16, 0, n) }, nil},
		{"COMPARE AND WRITE", maxCAW, func(n uint32) []byte { return cawCDB(0, byte(n)) }, func(n uint32) []byte { return make([]byte, 2*int(n)*bs) }},
		{"WRITE SAME(10)", maxWS, func(n uint32) []byte { return cdb10(OpWriteSame10, 0, uint16(n)) }, func(uint32) []byte { return make([]byte, bs) }},
		{"WRITE SAME(16)", maxWS, func(n uint32) []byte { return cdb16(OpWriteSame16, 0, n) }, func(uint32) []byte { return make([]byte, bs) }},
	}
	for _, c := range cmds {
		for _, n := range []uint32{c.limit, c.limit + 1} {
			t.Run(fmt.Sprintf("%s %d blocks", c.name, n), func(t *testing.T) {
				var data []byte
				if c.data != nil {
					data = c.data(n)
				} else {
					data = blocks(n)
				}
				_, err := exec(t, d, c.cdb(n), data)
				if n == c.limit {
					if err != nil {
						t.Errorf("%s of %d blocks (the limit) = %v, want GOOD", c.name, n, err)
					}
					return
				}
				if !errors.Is(err, ErrInvalidFieldInCDB) {
					t.Errorf("%s of %d blocks (limit %d) = %v, want INVALID FIELD IN CDB", c.name, n, c.limit, err)
				}
			})
		}
	}

	// UNMAP: the block count over all descriptors, and the number of
	// descriptors.
	mustOK(t, d, unmapCDB(len(unmapList([2]uint64{0, uint64(maxUnmap)}))), unmapList([2]uint64{0, uint64(maxUnmap)}))
	p = unmapList([2]uint64{0, uint64(maxUnmap) - 1}, [2]uint64{100, 2})
	_, err := exec(t, d, unmapCDB(len(p)), p)
	if !errors.Is(err, ErrInvalidFieldInParamList) {
		t.Errorf("UNMAP of %d blocks (limit %d) = %v, want INVALID FIELD IN PARAMETER LIST", maxUnmap+1, maxUnmap, err)
	}
	var descs [][2]uint64
	for i := range maxUnmapDescs + 1 {
		descs = append(descs, [2]uint64{uint64(10 * i), 1})
	}
	p = unmapList(descs[:maxUnmapDescs]...)
	mustOK(t, d, unmapCDB(len(p)), p)
	p = unmapList(descs...)
	_, err = exec(t, d, unmapCDB(len(p)), p)
	if !errors.Is(err, ErrInvalidFieldInParamList) {
		t.Errorf("UNMAP with %d descriptors (limit %d) = %v, want INVALID FIELD IN PARAMETER LIST", len(descs), maxUnmapDescs, err)
	}
}
