// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func inquiryCDB(evpd bool, page byte, alloc uint16) []byte {
	b := []byte{0x12, 0, page, byte(alloc >> 8), byte(alloc), 0}
	if evpd {
		b[1] = 1
	}
	return b
}

func TestInquiryStandard(t *testing.T) {
	d, _ := newDisk(t, nil)
	b := mustIn(t, d, inquiryCDB(false, 0, 255), 255)
	golden(t, "inquiry_std", b)
	// SPC-5 field by field.
	checks := []struct {
		what string
		got  any
		want any
	}{
		{"length", len(b), 74},
		{"peripheral", b[0], byte(0x00)},
		{"RMB", b[1] & 0x80, byte(0)},
		// SPC-5 table "VERSION field": 06h is SPC-4 (see inquiry.go
		// for why not 07h, SPC-5).
		{"VERSION (SPC-4)", b[2], byte(0x06)},
		{"HISUP|RESPONSE DATA FORMAT", b[3], byte(0x12)},
		// SPC-5: the number of bytes after byte 4. sg_inq caught 70
		// here ("length=75, but only fetched 74 bytes").
		{"ADDITIONAL LENGTH", int(b[4]), len(b) - 5},
		{"3PC", b[5] & 0x08, byte(0x08)},
		{"CMDQUE", b[7] & 0x02, byte(0x02)},
		{"vendor", string(b[8:16]), "LUNBRIDG"},
		{"product", string(b[16:32]), "lunbridge       "},
		{"revision", string(b[32:36]), "0001"},
		// SPC-5 table "Version descriptor values": SAM-5 00A0h,
		// SPC-4 0460h, SBC-3 04C0h, SBC-4 0600h, then unused zeros.
		{"version descriptors", fmt.Sprintf("% x", b[58:74]), "00 a0 04 60 04 c0 06 00 00 00 00 00 00 00 00 00"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("INQUIRY %s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestInquiryAllocationLength(t *testing.T) {
	d, _ := newDisk(t, nil)
	full := mustIn(t, d, inquiryCDB(false, 0, 255), 255)
	for _, alloc := range []uint16{0, 1, 5, 36, 74, 1000} {
		got := mustIn(t, d, inquiryCDB(false, 0, alloc), 4096)
		want := full[:min(int(alloc), len(full))]
		if !bytes.Equal(got, want) {
			t.Errorf("INQUIRY alloc %d: got %d bytes, want %d", alloc, len(got), len(want))
		}
	}
	// A buffer shorter than the allocation length: DataIn is what fit.
	buf := make([]byte, 10)
	res := mustOK(t, d, inquiryCDB(false, 0, 255), buf[:4], buf[4:])
	if res.DataIn != 10 || !bytes.Equal(buf, full[:10]) {
		t.Errorf("INQUIRY into 10 bytes: DataIn %d, data % x", res.DataIn, buf)
	}
}

func TestInquiryErrors(t *testing.T) {
	d, _ := newDisk(t, nil)
	// SPC-5: PAGE CODE without EVPD.
	_, err := exec(t, d, inquiryCDB(false, 0x80, 255), make([]byte, 255))
	wantErr(t, err, ErrInvalidFieldInCDB, 2, 7)
	for _, page := range []byte{0x01, 0x81, 0x89, 0x8f, 0xb3, 0xff} {
		_, err := exec(t, d, inquiryCDB(true, page, 255), make([]byte, 255))
		wantErr(t, err, ErrInvalidFieldInCDB, 2, 7)
	}
}

func TestVPDPages(t *testing.T) {
	d, _ := newDisk(t, nil)
	pages := mustIn(t, d, inquiryCDB(true, 0, 255), 255)
	golden(t, "vpd_00", pages)
	if want := []byte{0, 0, 0, 7, 0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2}; !bytes.Equal(pages, want) {
		t.Errorf("VPD 00h = % x, want % x", pages, want)
	}
	for _, code := range pages[4:] {
		p := mustIn(t, d, inquiryCDB(true, code, 0xffff), 0xffff)
		golden(t, fmt.Sprintf("vpd_%02x", code), p)
		if p[1] != code || int(be16(p[2:])) != len(p)-4 {
			t.Errorf("VPD %02xh header % x, length %d", code, p[:4], len(p))
		}
	}
}

func TestVPDSerialAndDeviceID(t *testing.T) {
	d, _ := newDisk(t, nil)
	sn := mustIn(t, d, inquiryCDB(true, 0x80, 255), 255)
	if string(sn[4:]) != "lb0123456789abcdef" {
		t.Errorf("VPD 80h serial %q", sn[4:])
	}
	id := mustIn(t, d, inquiryCDB(true, 0x83, 255), 255)
	naa := NAAFromName("test-lun")
	// First descriptor: binary, LU, NAA, 16 bytes.
	if want := append([]byte{0x01, 0x03, 0x00, 0x10}, naa[:]...); !bytes.Equal(id[4:24], want) {
		t.Errorf("VPD 83h NAA descriptor % x, want % x", id[4:24], want)
	}
	if naa[0] != 0x60 || naa[1] != 0x01 || naa[2] != 0x40 || naa[3]>>4 != 0x5 {
		t.Errorf("NAAFromName: % x does not start with NAA 6, OUI 001405h", naa)
	}
	if NAAFromName("test-lun") != naa || NAAFromName("other") == naa {
		t.Error("NAAFromName is not a stable function of the name")
	}
	// Second: ASCII T10 vendor ID, vendor then serial.
	t10 := id[24:]
	if t10[0] != 0x02 || t10[1] != 0x01 || string(t10[4:4+t10[3]]) != "LUNBRIDGlb0123456789abcdef" {
		t.Errorf("VPD 83h T10 descriptor % x", t10)
	}
	// Third: UTF-8 SCSI name string "naa.<hex>", null padded to 4.
	name := t10[4+t10[3]:]
	want := fmt.Sprintf("naa.%X", naa[:])
	if name[0] != 0x03 || name[1] != 0x08 || name[3]%4 != 0 || string(name[4:4+len(want)]) != want || name[4+len(want)] != 0 {
		t.Errorf("VPD 83h SCSI name descriptor % x (%q)", name, name[4:])
	}
}

func TestVPDBlockLimits(t *testing.T) {
	d, _ := newDisk(t, func(c *Config) { c.OptimalTransferBlocks = 64 })
	p := mustIn(t, d, inquiryCDB(true, 0xb0, 255), 255)
	// SBC-4 offsets.
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"page length", uint64(be16(p[2:])), 0x3c},
		{"WSNZ", uint64(p[4] & 1), 1},
		{"MAXIMUM COMPARE AND WRITE LENGTH", uint64(p[5]), 128},
		{"OPTIMAL TRANSFER LENGTH GRANULARITY", uint64(be16(p[6:])), 8},
		{"MAXIMUM TRANSFER LENGTH", uint64(be32(p[8:])), 256},
		{"OPTIMAL TRANSFER LENGTH", uint64(be32(p[12:])), 64},
		{"MAXIMUM UNMAP LBA COUNT", uint64(be32(p[20:])), 1024},
		{"MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT", uint64(be32(p[24:])), 4},
		{"OPTIMAL UNMAP GRANULARITY", uint64(be32(p[28:])), 8},
		{"UGAVALID", uint64(p[32] >> 7), 1},
		{"MAXIMUM WRITE SAME LENGTH", be64(p[36:]), 2048},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("VPD B0h %s = %d, want %d", c.what, c.got, c.want)
		}
	}
}

func TestVPDProvisioning(t *testing.T) {
	for _, thin := range []bool{true, false} {
		d, _ := newDisk(t, func(c *Config) { c.ThinProvisioning = thin })
		p := mustIn(t, d, inquiryCDB(true, 0xb2, 255), 255)
		// SBC-4: LBPU, LBPWS, LBPWS10, LBPRZ 001b; type 010b thin.
		want := []byte{0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0}
		if !thin {
			want = []byte{0, 0xb2, 0, 4, 0, 0, 0, 0}
		}
		if !bytes.Equal(p, want) {
			t.Errorf("thin=%v: VPD B2h = % x, want % x", thin, p, want)
		}
		if !thin {
			continue
		}
		ch := mustIn(t, d, inquiryCDB(true, 0xb1, 255), 255)
		if be16(ch[4:]) != 1 {
			t.Errorf("VPD B1h MEDIUM ROTATION RATE %d, want 1 (non-rotating)", be16(ch[4:]))
		}
	}
}

func TestReadCapacity(t *testing.T) {
	d, _ := newDisk(t, nil)
	rc10 := mustIn(t, d, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8)
	golden(t, "read_capacity_10", rc10)
	if want := []byte{0, 0, 0x0f, 0xff, 0, 0, 0x02, 0}; !bytes.Equal(rc10, want) {
		t.Errorf("READ CAPACITY(10) = % x, want % x", rc10, want)
	}
	rc16 := mustIn(t, d, []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, 32)
	golden(t, "read_capacity_16", rc16)
	// Last LBA FFFh, 512-byte blocks, RC BASIS 01b, 8 blocks per
	// physical block (exponent 3), LBPME and LBPRZ.
	want := make([]byte, 32)
	copy(want, []byte{0, 0, 0, 0, 0, 0, 0x0f, 0xff, 0, 0, 0x02, 0, 0x10, 0x03, 0xc0, 0})
	if !bytes.Equal(rc16, want) {
		t.Errorf("READ CAPACITY(16) = % x, want % x", rc16, want)
	}
	// Allocation length 12 truncates.
	if got := mustIn(t, d, []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0}, 32); !bytes.Equal(got, want[:12]) {
		t.Errorf("READ CAPACITY(16) alloc 12 = % x", got)
	}
	// SBC-3: LBA without PMI.
	_, err := exec(t, d, []byte{0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0}, make([]byte, 8))
	wantErr(t, err, ErrInvalidFieldInCDB, 2, 7)
}

func TestReadCapacityAbove2TiB(t *testing.T) {
	tests := []struct {
		blocks uint64
		want10 uint32
	}{
		{0xffffffff, 0xfffffffe},  // last LBA fits
		{0x100000000, 0xffffffff}, // last LBA FFFFFFFFh: use (16)
		{1 << 40, 0xffffffff},
	}
	for _, tt := range tests {
		d, err := NewDisk(Config{BlockSize: 512, Blocks: tt.blocks, Serial: "x"}, nullBackend{})
		if err != nil {
			t.Fatal(err)
		}
		rc10 := mustIn(t, d, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8)
		if got := be32(rc10); got != tt.want10 {
			t.Errorf("%d blocks: READ CAPACITY(10) LBA %#x, want %#x", tt.blocks, got, tt.want10)
		}
		rc16 := mustIn(t, d, []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, 32)
		if got := be64(rc16); got != tt.blocks-1 {
			t.Errorf("%d blocks: READ CAPACITY(16) LBA %#x", tt.blocks, got)
		}
		if rc16[14]&0x80 != 0 {
			t.Errorf("LBPME set on a fully provisioned disk")
		}
	}
}

func TestOfflineAndStopped(t *testing.T) {
	d, _ := newDisk(t, nil)
	d.SetOnline(false)
	for _, cdb := range [][]byte{{0, 0, 0, 0, 0, 0}, cdb10(OpRead10, 0, 1), cdb10(OpWrite10, 0, 1), {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		_, err := exec(t, d, cdb, make([]byte, 512))
		wantErr(t, err, ErrNotReadyManual, -1, -1)
	}
	mustIn(t, d, inquiryCDB(false, 0, 36), 36)
	mustIn(t, d, []byte{0x1a, 0, 0x3f, 0, 255, 0}, 255)
	rs := mustIn(t, d, []byte{0x03, 0, 0, 0, 18, 0}, 18)
	if rs[2] != 0x02 || rs[12] != 0x04 || rs[13] != 0x03 {
		t.Errorf("REQUEST SENSE offline = % x, want 02/04/03", rs)
	}
	d.SetOnline(true)
	mustOK(t, d, []byte{0, 0, 0, 0, 0, 0})

	// START STOP UNIT: START=0 stops (after a sync), START=1 starts.
	mustOK(t, d, []byte{0x1b, 0, 0, 0, 0, 0})
	_, err := exec(t, d, []byte{0, 0, 0, 0, 0, 0})
	wantErr(t, err, ErrNotReadyStopped, -1, -1)
	mustOK(t, d, []byte{0x1b, 0x01, 0, 0, 0x01, 0})
	mustOK(t, d, []byte{0, 0, 0, 0, 0, 0})
}

func TestCapacityChangedUnitAttention(t *testing.T) {
	d, _ := newDisk(t, nil)
	if err := d.SetCapacity(testBlocks / 2); err != nil {
		t.Fatal(err)
	}
	// INQUIRY does not report or clear it (SAM-5).
	mustIn(t, d, inquiryCDB(false, 0, 36), 36)
	_, err := exec(t, d, []byte{0, 0, 0, 0, 0, 0})
	wantErr(t, err, ErrCapacityChanged, -1, -1)
	mustOK(t, d, []byte{0, 0, 0, 0, 0, 0}) // once
	rc := mustIn(t, d, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8)
	if be32(rc) != testBlocks/2-1 {
		t.Errorf("READ CAPACITY after resize: last LBA %d", be32(rc))
	}
	// REQUEST SENSE reports and clears it.
	if err := d.SetCapacity(testBlocks); err != nil {
		t.Fatal(err)
	}
	rs := mustIn(t, d, []byte{0x03, 0, 0, 0, 18, 0}, 18)
	if rs[2] != 0x06 || rs[12] != 0x2a || rs[13] != 0x09 {
		t.Errorf("REQUEST SENSE = % x, want 06/2A/09", rs)
	}
	mustOK(t, d, []byte{0, 0, 0, 0, 0, 0})
	rs = mustIn(t, d, []byte{0x03, 0x01, 0, 0, 18, 0}, 18)
	if want := []byte{0x72, 0, 0, 0, 0, 0, 0, 0}; !bytes.Equal(rs, want) {
		t.Errorf("REQUEST SENSE DESC with nothing pending = % x, want % x", rs, want)
	}
	if err := d.SetCapacity(0); err == nil {
		t.Error("SetCapacity(0) succeeded")
	}
}

// nullBackend does nothing, instantly: for benchmarks and huge disks.
type nullBackend struct{}

func (nullBackend) ReadAt(bufs [][]byte, off int64) (int, error)  { return bufLen(bufs), nil }
func (nullBackend) WriteAt(bufs [][]byte, off int64) (int, error) { return bufLen(bufs), nil }
func (nullBackend) Sync(off, n int64) error                       { return nil }
func (nullBackend) Unmap(off, n int64) error                      { return nil }
func (nullBackend) Mapped(off int64) (bool, int64, error)         { return true, 1 << 62, nil }

func TestNewDiskValidates(t *testing.T) {
	ok := Config{BlockSize: 4096, Blocks: 10, Serial: "s"}
	bad := []func(*Config){
		func(c *Config) { c.BlockSize = 1024 },
		func(c *Config) { c.Blocks = 0 },
		func(c *Config) { c.Serial = "" },
		func(c *Config) { c.Serial = "tab\there" },
		func(c *Config) { c.Vendor = "TOOLONGVENDOR" },
		func(c *Config) { c.PhysicalBlockSize = 12288 },
		func(c *Config) { c.NAA = [16]byte{0x50} },
	}
	if _, err := NewDisk(ok, nullBackend{}); err != nil {
		t.Fatalf("NewDisk(%+v) = %v", ok, err)
	}
	for i, mod := range bad {
		c := ok
		mod(&c)
		if _, err := NewDisk(c, nullBackend{}); err == nil {
			t.Errorf("case %d: NewDisk(%+v) succeeded", i, c)
		}
	}
	if _, err := NewDisk(ok, nil); err == nil || errors.Is(err, ErrInvalidOpcode) {
		t.Errorf("NewDisk with nil backend: %v", err)
	}
}
