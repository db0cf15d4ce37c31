// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"testing"
)

func rsocCDB(rctd bool, opts byte, op Opcode, sa uint16, alloc uint32) []byte {
	b := []byte{0xa3, 0x0c, opts, byte(op), byte(sa >> 8), byte(sa), 0, 0, 0, 0, 0, 0}
	if rctd {
		b[2] |= 0x80
	}
	put32(b[6:], alloc)
	return b
}

func TestReportSupportedOpcodesAll(t *testing.T) {
	d, _ := newDisk(t, func(c *Config) { c.KernelPR = true })
	b := mustIn(t, d, rsocCDB(false, 0, 0, 0, 8192), 8192)
	golden(t, "rsoc_all", b)
	if int(be32(b)) != len(b)-4 || (len(b)-4)%8 != 0 {
		t.Fatalf("RSOC all: length %d, data length %d", len(b), be32(b))
	}
	type key struct {
		op Opcode
		sa uint16
	}
	seen := map[key]uint16{}
	for p := b[4:]; len(p) > 0; p = p[8:] {
		k := key{Opcode(p[0]), be16(p[2:])}
		if p[5]&0x01 == 0 && k.sa != 0 {
			t.Errorf("%v: SA %#x without SERVACTV", k.op, k.sa)
		}
		seen[k] = be16(p[6:])
	}
	for _, w := range []struct {
		op  Opcode
		sa  uint16
		len uint16
	}{
		{OpTestUnitReady, 0, 6}, {OpInquiry, 0, 6}, {OpRead10, 0, 10}, {OpWrite16, 0, 16},
		{OpRead12, 0, 12}, {OpServiceActionIn16, SAReadCapacity16, 16}, {OpServiceActionIn16, SAGetLBAStatus, 16},
		{OpMaintenanceIn, SAReportSupportedOpcodes, 12}, {OpUnmap, 0, 10}, {OpCompareAndWrite, 0, 16},
		{OpReportLUNs, 0, 12}, {OpPersistentReserveOut, 7, 10}, {OpExtendedCopy, 0, 16},
	} {
		if got, ok := seen[key{w.op, w.sa}]; !ok || got != w.len {
			t.Errorf("RSOC all: %v/%#x listed %v with CDB length %d, want %d", w.op, w.sa, ok, got, w.len)
		}
	}
	if _, ok := seen[key{OpMaintenanceIn, SAReportTargetPortGroups}]; ok {
		t.Error("REPORT TARGET PORT GROUPS listed")
	}
	// Without thin provisioning or kernel PR, those are not listed.
	full, _ := newDisk(t, func(c *Config) { c.ThinProvisioning = false })
	b = mustIn(t, full, rsocCDB(false, 0, 0, 0, 8192), 8192)
	for p := b[4:]; len(p) > 0; p = p[8:] {
		if op := Opcode(p[0]); op == OpUnmap || op == OpPersistentReserveIn || op == OpPersistentReserveOut || op == OpServiceActionIn16 && p[3] == SAGetLBAStatus {
			t.Errorf("fully provisioned disk without kernel PR lists %v", op)
		}
	}
	// RCTD: CTDP set and a 12-byte timeouts descriptor after each.
	b = mustIn(t, d, rsocCDB(true, 0, 0, 0, 8192), 8192)
	if (len(b)-4)%20 != 0 || b[4+5]&0x02 == 0 || be16(b[4+8:]) != 0x0a {
		t.Errorf("RSOC RCTD: % x", b[:32])
	}
}

func TestReportSupportedOpcodesOne(t *testing.T) {
	d, _ := newDisk(t, nil)
	tests := []struct {
		name string
		cdb  []byte
		want []byte
	}{
		{"READ(16)", rsocCDB(false, 1, OpRead16, 0, 512),
			[]byte{0, 0x03, 0, 16, 0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
		{"READ(6)", rsocCDB(false, 1, OpRead6, 0, 512), []byte{0, 0x03, 0, 6, 0x08, 0x1f, 0xff, 0xff, 0xff, 0}},
		{"unsupported opcode", rsocCDB(false, 1, 0x02, 0, 512), []byte{0, 0x01, 0, 0}},
		{"READ CAPACITY(16)", rsocCDB(false, 2, OpServiceActionIn16, SAReadCapacity16, 512),
			[]byte{0, 0x03, 0, 16, 0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}},
		{"unsupported service action", rsocCDB(false, 2, OpServiceActionIn16, 0x11, 512), []byte{0, 0x01, 0, 0}},
		{"option 3 without SA", rsocCDB(false, 3, OpTestUnitReady, 0x55, 512), []byte{0, 0x03, 0, 6, 0, 0, 0, 0, 0, 0}},
		{"RCTD", rsocCDB(true, 1, OpTestUnitReady, 0, 512), []byte{0, 0x83, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"truncated", rsocCDB(false, 1, OpRead16, 0, 6), []byte{0, 0x03, 0, 16, 0x88, 0x18}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustIn(t, d, tt.cdb, 512); !bytes.Equal(got, tt.want) {
				t.Errorf("RSOC = % x, want % x", got, tt.want)
			}
		})
	}
	_, err := exec(t, d, rsocCDB(false, 1, OpServiceActionIn16, 0, 512), make([]byte, 512))
	wantErr(t, err, ErrInvalidFieldInCDB, 3, 7)
	_, err = exec(t, d, rsocCDB(false, 2, OpRead10, 0, 512), make([]byte, 512))
	wantErr(t, err, ErrInvalidFieldInCDB, 3, 7)
	_, err = exec(t, d, rsocCDB(false, 4, OpRead10, 0, 512), make([]byte, 512))
	wantErr(t, err, ErrInvalidFieldInCDB, 2, 2)
	// Every command the one-command form reports matches what ParseCDB
	// accepts: the usage data is itself a valid CDB.
	for _, cmd := range commands {
		opts := byte(1)
		if cmd.flags&fSA != 0 {
			opts = 2
		}
		b := mustIn(t, d, rsocCDB(false, opts, cmd.op, uint16(cmd.sa), 512), 512)
		if b[1]&0x07 != 0x03 {
			continue
		}
		usage := b[4:]
		if _, err := ParseCDB(usage); err != nil && cmd.flags&(fKernel|fKernelPR) == 0 {
			t.Errorf("%v: usage data % x does not parse: %v", cmd.op, usage, err)
		}
	}
}

func TestFormatUnit(t *testing.T) {
	d, mem := newDisk(t, nil)
	mustOK(t, d, cdb10(OpWrite10, 0, 8), pattern(8*512, 1))
	mustOK(t, d, []byte{0x04, 0, 0, 0, 0, 0})
	if mem.IsMapped(0) || !bytes.Equal(mem.Bytes()[:4096], make([]byte, 4096)) {
		t.Error("FORMAT UNIT of a thin disk did not deallocate")
	}
	// FMTDATA with a short header: IMMED is fine.
	mustOK(t, d, []byte{0x04, 0x10, 0, 0, 0, 0}, []byte{0, 0x02, 0, 0})
	// LONGLIST header.
	mustOK(t, d, []byte{0x04, 0x30, 0, 0, 0, 0}, []byte{0, 0x82, 0, 0, 0, 0, 0, 0})
	for _, tt := range []struct {
		name       string
		cdb, list  []byte
		want       *Error
		field, bit int
	}{
		{"FMTPINFO", []byte{0x04, 0x80, 0, 0, 0, 0}, nil, ErrInvalidFieldInCDB, 1, 7},
		{"protection field usage", []byte{0x04, 0x10, 0, 0, 0, 0}, []byte{1, 0, 0, 0}, ErrInvalidFieldInParamList, 0, 7},
		{"DCRT without FOV", []byte{0x04, 0x10, 0, 0, 0, 0}, []byte{0, 0x20, 0, 0}, ErrInvalidFieldInParamList, 1, 5},
		{"IP", []byte{0x04, 0x10, 0, 0, 0, 0}, []byte{0, 0x88, 0, 0}, ErrInvalidFieldInParamList, 1, 3},
		{"defect list", []byte{0x04, 0x10, 0, 0, 0, 0}, []byte{0, 0, 0, 4, 0, 0, 0, 0}, ErrInvalidFieldInParamList, 2, 7},
		{"short header", []byte{0x04, 0x10, 0, 0, 0, 0}, []byte{0, 0}, ErrParamListLengthError, -1, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exec(t, d, tt.cdb, tt.list)
			wantErr(t, err, tt.want, tt.field, tt.bit)
		})
	}
}

func TestSendDiagnosticAndPrevent(t *testing.T) {
	d, _ := newDisk(t, nil)
	mustOK(t, d, []byte{0x1d, 0x04, 0, 0, 0, 0})         // default self-test
	mustOK(t, d, []byte{0x1d, 0xa0, 0, 0, 0, 0})         // foreground short
	mustOK(t, d, []byte{0x1d, 0xc0 | 0x10, 0, 0, 0, 0})  // foreground extended, PF
	_, err := exec(t, d, []byte{0x1d, 0x20, 0, 0, 0, 0}) // background short
	wantErr(t, err, ErrInvalidFieldInCDB, 1, 7)
	// PF with the Supported Diagnostic Pages page, then its results.
	mustOK(t, d, []byte{0x1d, 0x10, 0, 0, 4, 0}, make([]byte, 4))
	if got := mustIn(t, d, []byte{0x1c, 0, 0, 0, 255, 0}, 255); !bytes.Equal(got, []byte{0, 0, 0, 1, 0}) {
		t.Errorf("RECEIVE DIAGNOSTIC RESULTS = % x", got)
	}
	if got := mustIn(t, d, []byte{0x1c, 1, 0, 0, 3, 0}, 255); !bytes.Equal(got, []byte{0, 0, 0}) {
		t.Errorf("RECEIVE DIAGNOSTIC RESULTS PCV page 0, alloc 3 = % x", got)
	}
	_, err = exec(t, d, []byte{0x1c, 1, 0x80, 0, 255, 0}, make([]byte, 255))
	wantErr(t, err, ErrInvalidFieldInCDB, 2, 7)
	_, err = exec(t, d, []byte{0x1d, 0x10, 0, 0, 4, 0}, []byte{0x3f, 0, 0, 0})
	wantErr(t, err, ErrInvalidFieldInParamList, 0, 7)
	_, err = exec(t, d, []byte{0x1d, 0x00, 0, 0, 4, 0}, make([]byte, 4))
	wantErr(t, err, ErrInvalidFieldInCDB, 3, 7)
	_, err = exec(t, d, []byte{0x1d, 0x10, 0, 0, 2, 0}, make([]byte, 2))
	wantErr(t, err, ErrParamListLengthError, -1, -1)
	mustOK(t, d, []byte{0x1e, 0, 0, 0, 1, 0})
	mustOK(t, d, []byte{0x1e, 0, 0, 0, 0, 0})
}

func TestUnknownOpcodes(t *testing.T) {
	d, _ := newDisk(t, nil)
	for _, cdb := range [][]byte{
		{0x02, 0, 0, 0, 0, 0},
		{0x4d, 0, 0, 0, 0, 0, 0, 0, 0, 0},                         // LOG SENSE
		{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0},                  // REPORT LUNS: the kernel's
		{0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0},                         // PR IN without KernelPR
		{0x9f, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},    // SERVICE ACTION OUT(16)
		{0x7f, 0, 0, 0, 0, 0, 0, 0x18, 0, 0x09, 0, 0, 0, 0, 0, 0}, // READ(32)
	} {
		_, err := exec(t, d, cdb, make([]byte, 64))
		wantErr(t, err, ErrInvalidOpcode, -1, -1)
	}
}
