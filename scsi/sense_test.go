// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestSenseFormats(t *testing.T) {
	tests := []struct {
		name       string
		err        *Error
		fixed      []byte
		descriptor []byte
	}{
		{
			name: "LBA out of range",
			err:  ErrLBAOutOfRange,
			// SPC-5: 70h, key in byte 2, ADDITIONAL SENSE LENGTH
			// 0Ah, ASC/ASCQ in bytes 12-13.
			fixed:      []byte{0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0},
			descriptor: []byte{0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0},
		},
		{
			name: "invalid field in CDB byte 1 bit 5",
			err:  cdbField(1, 5),
			// SKSV=1, C/D=1, BPV=1, BIT POINTER 5, FIELD POINTER 0001h.
			fixed: []byte{0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0x00, 0, 0xcd, 0x00, 0x01},
			descriptor: []byte{0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0x08,
				0x02, 0x06, 0, 0, 0xcd, 0x00, 0x01, 0},
		},
		{
			name:  "invalid field in parameter list byte 300",
			err:   paramField(300, -1),
			fixed: []byte{0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x26, 0x00, 0, 0x80, 0x01, 0x2c},
			descriptor: []byte{0x72, 0x05, 0x26, 0x00, 0, 0, 0, 0x08,
				0x02, 0x06, 0, 0, 0x80, 0x01, 0x2c, 0},
		},
		{
			name: "miscompare at offset 513",
			err:  ErrMiscompare.WithInfo(513),
			// VALID=1 and INFORMATION 00000201h.
			fixed: []byte{0xf0, 0, 0x0e, 0, 0, 0x02, 0x01, 0x0a, 0, 0, 0, 0, 0x1d, 0x00, 0, 0, 0, 0},
			descriptor: []byte{0x72, 0x0e, 0x1d, 0x00, 0, 0, 0, 0x0c,
				0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01},
		},
		{
			name: "information beyond 32 bits",
			err:  ErrMiscompare.WithInfo(1 << 40),
			// Fixed format cannot hold it: VALID=0.
			fixed: []byte{0x70, 0, 0x0e, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x1d, 0x00, 0, 0, 0, 0},
			descriptor: []byte{0x72, 0x0e, 0x1d, 0x00, 0, 0, 0, 0x0c,
				0x00, 0x0a, 0x80, 0, 0, 0, 0x01, 0, 0, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Fixed([]byte{0xaa}); !bytes.Equal(got[1:], tt.fixed) || got[0] != 0xaa {
				t.Errorf("Fixed = % x, want aa % x", got, tt.fixed)
			}
			if got := tt.err.Descriptor(nil); !bytes.Equal(got, tt.descriptor) {
				t.Errorf("Descriptor = % x, want % x", got, tt.descriptor)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	e := cdbField(3, 1)
	wrapped := fmt.Errorf("context: %w", e)
	if !errors.Is(wrapped, ErrInvalidFieldInCDB) {
		t.Errorf("errors.Is(%v, ErrInvalidFieldInCDB) = false", wrapped)
	}
	if errors.Is(wrapped, ErrInvalidFieldInParamList) {
		t.Errorf("errors.Is(%v, ErrInvalidFieldInParamList) = true", wrapped)
	}
	if errors.Is(ErrSpaceAllocFailed, ErrWriteProtected) {
		t.Error("07/27/07 matches 07/27/00: ASCQ ignored")
	}
	if got := e.Error(); got != "scsi: ILLEGAL REQUEST 05/24/00: invalid field in CDB (CDB byte 3 bit 1)" {
		t.Errorf("Error() = %q", got)
	}
	if KeyMiscompare.String() != "MISCOMPARE" || SenseKey(0x20).String() != "SenseKey(0x20)" {
		t.Errorf("SenseKey.String: %v %v", KeyMiscompare, SenseKey(0x20))
	}
}

// TestDiskSenseFollowsDSense checks that Disk.Sense switches to
// descriptor format when MODE SELECT sets D_SENSE in the control page.
func TestDiskSenseFollowsDSense(t *testing.T) {
	d, _ := newDisk(t, nil)
	if got := d.Sense(nil, ErrLBAOutOfRange); got[0] != 0x70 {
		t.Fatalf("default sense response code %#x, want 70h", got[0])
	}
	// MODE SELECT(6), PF: header (4) + control page with D_SENSE.
	page, _ := d.modePage(pageControl, pcCurrent)
	page[2] |= 0x04
	p := append([]byte{0, 0, 0, 0}, page...)
	mustOK(t, d, []byte{0x15, 0x10, 0, 0, byte(len(p)), 0}, p)
	if got := d.Sense(nil, ErrLBAOutOfRange); got[0] != 0x72 {
		t.Errorf("sense response code after D_SENSE=1: %#x, want 72h", got[0])
	}
	_, err := exec(t, d, cdb10(OpRead10, testBlocks, 1), make([]byte, 512))
	wantErr(t, err, ErrLBAOutOfRange, -1, -1)
}

func TestNames(t *testing.T) {
	tests := []struct {
		cdb  []byte
		want string
	}{
		{[]byte{0x28, 0}, "READ(10)"},
		{[]byte{0x9e, 0x10}, "READ CAPACITY(16)"},
		{[]byte{0x9e, 0x12}, "GET LBA STATUS"},
		{[]byte{0x9e, 0x1f}, "SERVICE ACTION IN(16)"},
		{[]byte{0xa3, 0x0c}, "REPORT SUPPORTED OPERATION CODES"},
		{[]byte{0xc1}, "Opcode(0xc1)"},
		{nil, "none"},
	}
	for _, tt := range tests {
		if got := CommandName(tt.cdb); got != tt.want {
			t.Errorf("CommandName(% x) = %q, want %q", tt.cdb, got, tt.want)
		}
	}
	if KindCompareAndWrite.String() != "caw" || Kind(99).String() != "other" {
		t.Error("Kind.String")
	}
}
