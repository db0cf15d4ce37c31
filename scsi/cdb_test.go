// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"errors"
	"testing"
)

func TestParseCDB(t *testing.T) {
	type want struct {
		lba    uint64
		blocks uint32
		length uint32
		sa     uint8
	}
	tests := []struct {
		name  string
		cdb   []byte
		want  want
		err   *Error
		field int // expected field pointer byte, -1: none checked
		bit   int
	}{
		// SBC-4 READ(6): 21-bit LBA, TRANSFER LENGTH 0 means 256.
		{name: "READ(6) LBA 0 length 0 is 256 blocks", cdb: []byte{0x08, 0, 0, 0, 0, 0}, want: want{lba: 0, blocks: 256}},
		{name: "READ(6) 21-bit LBA", cdb: []byte{0x08, 0x1f, 0xff, 0xff, 1, 0}, want: want{lba: 0x1fffff, blocks: 1}},
		{name: "READ(6) reserved bits of byte 1", cdb: []byte{0x08, 0x20, 0, 0, 1, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 5},
		{name: "WRITE(6) length 255", cdb: []byte{0x0a, 0x01, 0x02, 0x03, 255, 0}, want: want{lba: 0x10203, blocks: 255}},
		{name: "READ(10)", cdb: []byte{0x28, 0, 0x12, 0x34, 0x56, 0x78, 0, 0x01, 0x00, 0}, want: want{lba: 0x12345678, blocks: 256}},
		{name: "READ(10) length 0 stays 0", cdb: []byte{0x28, 0, 0, 0, 0, 1, 0, 0, 0, 0}, want: want{lba: 1}},
		{name: "READ(10) FUA DPO", cdb: []byte{0x28, 0x18, 0, 0, 0, 0, 0, 0, 1, 0}, want: want{blocks: 1}},
		{name: "READ(10) RDPROTECT without PI", cdb: []byte{0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 5},
		{name: "READ(10) RARC", cdb: []byte{0x28, 0x04, 0, 0, 0, 0, 0, 0, 1, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 2},
		// SBC-4: GROUP NUMBER (byte 6 bits 5-0 of a 10-byte CDB,
		// byte 10 of a 12-byte one, byte 14 of a 16-byte one) is a
		// defined field, accepted and ignored; bits 7-6 are reserved.
		{name: "READ(10) GROUP NUMBER", cdb: []byte{0x28, 0, 0, 0, 0, 0, 0x3f, 0, 1, 0}, want: want{blocks: 1}},
		{name: "READ(10) byte 6 reserved", cdb: []byte{0x28, 0, 0, 0, 0, 0, 0x40, 0, 1, 0}, err: ErrInvalidFieldInCDB, field: 6, bit: 6},
		{name: "READ(12) GROUP NUMBER", cdb: []byte{0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0}, want: want{blocks: 1}},
		{name: "PRE-FETCH(10) IMMED GROUP NUMBER 3", cdb: []byte{0x34, 0x02, 0, 0, 0, 0, 0x03, 0, 1, 0}, want: want{blocks: 1}},
		{name: "PRE-FETCH(16) IMMED GROUP NUMBER 3", cdb: []byte{0x90, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x03, 0}, want: want{blocks: 1}},
		{name: "PRE-FETCH(16) byte 14 reserved", cdb: []byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0}, err: ErrInvalidFieldInCDB, field: 14, bit: 7},
		{name: "COMPARE AND WRITE GROUP NUMBER", cdb: []byte{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0}, want: want{blocks: 1}},
		{name: "READ(10) NACA", cdb: []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04}, err: ErrInvalidFieldInCDB, field: 9, bit: 2},
		{name: "READ(12)", cdb: []byte{0xa8, 0, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0}, want: want{lba: 9, blocks: 0x10000}},
		{name: "READ(16) 64-bit LBA", cdb: []byte{0x88, 0, 0x01, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0, 0}, want: want{lba: 0x0102030405060708, blocks: 0xffffffff}},
		{name: "WRITE(16) WRPROTECT", cdb: []byte{0x8a, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 7},
		{name: "WRITE(16) DLD2", cdb: []byte{0x8a, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 0},
		{name: "VERIFY(10) BYTCHK 01b", cdb: []byte{0x2f, 0x02, 0, 0, 0, 5, 0, 0, 2, 0}, want: want{lba: 5, blocks: 2}},
		{name: "VERIFY(16) VRPROTECT", cdb: []byte{0x8f, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 6},
		{name: "WRITE AND VERIFY(10) BYTCHK 11b", cdb: []byte{0x2e, 0x06, 0, 0, 0, 0, 0, 0, 1, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 2},
		{name: "SYNCHRONIZE CACHE(10) IMMED", cdb: []byte{0x35, 0x02, 0, 0, 0, 8, 0, 0, 0, 0}, want: want{lba: 8}},
		{name: "SYNCHRONIZE CACHE(16)", cdb: []byte{0x91, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0}, want: want{lba: 7, blocks: 3}},
		{name: "WRITE SAME(16) UNMAP NDOB", cdb: []byte{0x93, 0x09, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0}, want: want{lba: 1, blocks: 8}},
		{name: "WRITE SAME(16) ANCHOR", cdb: []byte{0x93, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 4},
		{name: "WRITE SAME(10) NDOB bit is reserved", cdb: []byte{0x41, 0x01, 0, 0, 0, 0, 0, 0, 1, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 0},
		{name: "UNMAP", cdb: []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, want: want{length: 24}},
		{name: "UNMAP ANCHOR", cdb: []byte{0x42, 0x01, 0, 0, 0, 0, 0, 0, 24, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 0},
		{name: "COMPARE AND WRITE", cdb: []byte{0x89, 0x08, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0}, want: want{lba: 4, blocks: 1}},
		{name: "COMPARE AND WRITE reserved byte 12", cdb: []byte{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 1, 1, 0, 0}, err: ErrInvalidFieldInCDB, field: 12, bit: 0},
		{name: "INQUIRY EVPD", cdb: []byte{0x12, 0x01, 0x80, 0x01, 0x00, 0}, want: want{length: 256}},
		{name: "INQUIRY CMDDT (obsolete)", cdb: []byte{0x12, 0x02, 0, 0, 36, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 1},
		{name: "MODE SENSE(6)", cdb: []byte{0x1a, 0x08, 0x3f, 0, 0xfc, 0}, want: want{length: 0xfc}},
		{name: "MODE SENSE(10) LLBAA", cdb: []byte{0x5a, 0x10, 0x08, 0, 0, 0, 0, 0x10, 0x00, 0}, want: want{length: 0x1000}},
		{name: "MODE SELECT(10)", cdb: []byte{0x55, 0x10, 0, 0, 0, 0, 0, 0, 28, 0}, want: want{length: 28}},
		{name: "READ CAPACITY(16)", cdb: []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, want: want{sa: 0x10, length: 32}},
		{name: "GET LBA STATUS", cdb: []byte{0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0x10, 0, 0, 0}, want: want{sa: 0x12, lba: 5, length: 0x1000}},
		{name: "SERVICE ACTION IN unknown SA", cdb: []byte{0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 4},
		{name: "SERVICE ACTION IN bits above SA", cdb: []byte{0x9e, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 5},
		{name: "REPORT SUPPORTED OPCODES", cdb: []byte{0xa3, 0x0c, 0x02, 0x9e, 0, 0x10, 0, 0, 2, 0, 0, 0}, want: want{sa: 0x0c, length: 512}},
		{name: "REPORT TARGET PORT GROUPS", cdb: []byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0}, want: want{sa: 0x0a, length: 512}},
		{name: "REPORT TARGET PORT GROUPS extended", cdb: []byte{0xa3, 0x2a, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0}, want: want{sa: 0x0a, length: 512}},
		{name: "REPORT TARGET PORT GROUPS format 010b", cdb: []byte{0xa3, 0x4a, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 6},
		{name: "SET TARGET PORT GROUPS", cdb: []byte{0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0}, err: ErrInvalidOpcode, field: -1},
		{name: "EXTENDED COPY LID1", cdb: []byte{0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, want: want{length: 256}},
		{name: "EXTENDED COPY LID4 unsupported", cdb: []byte{0x83, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 4},
		{name: "RECEIVE COPY RESULTS operating parameters", cdb: []byte{0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 44, 0, 0}, want: want{sa: 3, length: 44}},
		{name: "START STOP UNIT LOEJ", cdb: []byte{0x1b, 0, 0, 0, 0x02, 0}, err: ErrInvalidFieldInCDB, field: 4, bit: 1},
		{name: "START STOP UNIT power condition", cdb: []byte{0x1b, 0, 0, 0, 0x10, 0}, err: ErrInvalidFieldInCDB, field: 4, bit: 4},
		{name: "PREVENT ALLOW obsolete 10b", cdb: []byte{0x1e, 0, 0, 0, 0x02, 0}, err: ErrInvalidFieldInCDB, field: 4, bit: 1},
		{name: "REQUEST SENSE DESC", cdb: []byte{0x03, 0x01, 0, 0, 252, 0}, want: want{length: 252}},
		{name: "TEST UNIT READY", cdb: []byte{0x00, 0, 0, 0, 0, 0}},
		{name: "TEST UNIT READY reserved byte", cdb: []byte{0x00, 0, 1, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 2, bit: 0},
		{name: "FORMAT UNIT FMTDATA LONGLIST", cdb: []byte{0x04, 0x30, 0, 0, 0, 0}},
		{name: "FORMAT UNIT FFMT", cdb: []byte{0x04, 0, 0, 0, 0x01, 0}, err: ErrInvalidFieldInCDB, field: 4, bit: 0},
		{name: "SEND DIAGNOSTIC parameter list length", cdb: []byte{0x1d, 0x10, 0, 0x01, 0x02, 0}, want: want{length: 0x102}},
		{name: "MODE SELECT(6) PF SP", cdb: []byte{0x15, 0x11, 0, 0, 24, 0}, want: want{length: 24}},
		{name: "MODE SELECT(6) reserved byte 2", cdb: []byte{0x15, 0x10, 1, 0, 24, 0}, err: ErrInvalidFieldInCDB, field: 2, bit: 0},
		{name: "READ CAPACITY(10) PMI", cdb: []byte{0x25, 0, 0, 0, 1, 0, 0, 0, 1, 0}, want: want{lba: 0x100}},
		{name: "READ CAPACITY(10) RELADR (obsolete)", cdb: []byte{0x25, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 1, bit: 0},
		{name: "PRE-FETCH(10) IMMED", cdb: []byte{0x34, 0x02, 0, 0, 0, 3, 0, 0, 9, 0}, want: want{lba: 3, blocks: 9}},
		{name: "PRE-FETCH(16)", cdb: []byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0}, want: want{lba: 3, blocks: 9}},
		{name: "RECEIVE COPY RESULTS copy status", cdb: []byte{0x84, 0x00, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0}, want: want{length: 12}},
		{name: "RECEIVE COPY RESULTS operating parameters list ID is reserved", cdb: []byte{0x84, 0x03, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0}, err: ErrInvalidFieldInCDB, field: 2, bit: 2},
		{name: "unknown opcode", cdb: []byte{0x02, 0, 0, 0, 0, 0}, err: ErrInvalidOpcode, field: -1},
		{name: "variable length CDB", cdb: []byte{0x7f, 0, 0, 0, 0, 0, 0, 0x18, 0, 0x09}, err: ErrInvalidOpcode, field: -1},
		{name: "vendor group", cdb: []byte{0xc0, 0, 0, 0, 0, 0}, err: ErrInvalidOpcode, field: -1},
		{name: "empty", cdb: nil, err: ErrInvalidOpcode, field: -1},
		{name: "short CDB", cdb: []byte{0x28, 0, 0, 0}, err: ErrInvalidFieldInCDB, field: 4, bit: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCDB(tt.cdb)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseCDB(% x) = %v, want %v", tt.cdb, err, tt.err)
				}
				var se *Error
				errors.As(err, &se)
				if tt.field >= 0 {
					if !se.FieldValid || !se.InCDB || int(se.FieldByte) != tt.field || (tt.bit >= 0 && (!se.BitValid || int(se.FieldBit) != tt.bit)) {
						t.Errorf("ParseCDB(% x) field pointer = %+v, want byte %d bit %d", tt.cdb, se, tt.field, tt.bit)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCDB(% x) = %v, want success", tt.cdb, err)
			}
			got := want{lba: c.LBA, blocks: c.Blocks, length: c.Length, sa: c.ServiceAction}
			if got != tt.want {
				t.Errorf("ParseCDB(% x) = %+v, want %+v", tt.cdb, got, tt.want)
			}
			if c.Op != Opcode(tt.cdb[0]) || c.Len() != cdbLen(c.Op) {
				t.Errorf("ParseCDB(% x): Op %v Len %d", tt.cdb, c.Op, c.Len())
			}
		})
	}
}

func TestParseCDBFlags(t *testing.T) {
	c, err := ParseCDB([]byte{0x2a, 0x18, 0, 0, 0, 0, 0, 0, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !c.FUA() || !c.DPO() {
		t.Errorf("WRITE(10) 18h: FUA %v DPO %v, want both", c.FUA(), c.DPO())
	}
	// WRITE(6) has no FUA bit: byte 1 bit 3 is part of the LBA.
	c, err = ParseCDB([]byte{0x0a, 0x08, 0, 0, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if c.FUA() || c.LBA != 0x080000 {
		t.Errorf("WRITE(6) 08h: FUA %v LBA %#x, want false, 0x80000", c.FUA(), c.LBA)
	}
}

// TestCommandTable checks the table against SPC-5's layout rules: the
// usage data length is the group's CDB length, byte 0 is the opcode, and
// the last byte (CONTROL) accepts nothing.
func TestCommandTable(t *testing.T) {
	for _, c := range commands {
		if len(c.usage) != cdbLen(c.op) {
			t.Errorf("%v: usage %d bytes, want %d", c.op, len(c.usage), cdbLen(c.op))
		}
		if c.usage[len(c.usage)-1] != 0 {
			t.Errorf("%v: CONTROL byte usage %#x, want 0", c.op, c.usage[len(c.usage)-1])
		}
		if c.flags&fSA != 0 && c.usage[1]&0x1f != c.sa {
			t.Errorf("%v/%#x: usage byte 1 %#x does not hold the service action", c.op, c.sa, c.usage[1])
		}
		if c.exec == nil && c.flags&(fKernel|fKernelPR) == 0 {
			t.Errorf("%v: no handler", c.op)
		}
	}
}
