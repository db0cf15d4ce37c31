// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"fmt"
	"testing"
)

func modeSense6(dbd bool, pc, page, sub byte, alloc byte) []byte {
	b := []byte{0x1a, 0, pc<<6 | page, sub, alloc, 0}
	if dbd {
		b[1] = 0x08
	}
	return b
}

func modeSense10(llbaa, dbd bool, pc, page, sub byte, alloc uint16) []byte {
	b := []byte{0x5a, 0, pc<<6 | page, sub, 0, 0, 0, byte(alloc >> 8), byte(alloc), 0}
	if llbaa {
		b[1] |= 0x10
	}
	if dbd {
		b[1] |= 0x08
	}
	return b
}

func TestModeSenseGoldens(t *testing.T) {
	d, _ := newDisk(t, nil)
	for _, pc := range []byte{pcCurrent, pcChangeable, pcDefault} {
		for _, page := range []byte{0x01, 0x08, 0x0a, 0x1c, 0x3f} {
			b := mustIn(t, d, modeSense6(false, pc, page, 0, 255), 255)
			golden(t, fmt.Sprintf("mode_sense6_pc%d_%02x", pc, page), b)
			b10 := mustIn(t, d, modeSense10(false, true, pc, page, 0, 4096), 4096)
			golden(t, fmt.Sprintf("mode_sense10_dbd_pc%d_%02x", pc, page), b10)
		}
	}
	golden(t, "mode_sense10_llbaa_3f", mustIn(t, d, modeSense10(true, false, 0, 0x3f, 0xff, 4096), 4096))
}

func TestModeSenseLayout(t *testing.T) {
	d, _ := newDisk(t, nil)
	b := mustIn(t, d, modeSense6(false, pcCurrent, pageCaching, 0, 255), 255)
	// SPC-5 header: MODE DATA LENGTH, MEDIUM TYPE, DEVICE-SPECIFIC
	// (DPOFUA), BLOCK DESCRIPTOR LENGTH 8; SBC-4 short descriptor;
	// SBC-4 caching page 08h, length 12h, WCE.
	want := []byte{3 + 8 + 20, 0, 0x10, 8,
		0, 0, 0x10, 0x00, 0, 0, 0x02, 0x00,
		0x08, 0x12, 0x04}
	if !bytes.Equal(b[:len(want)], want) || len(b) != 4+8+20 {
		t.Errorf("MODE SENSE(6) caching = % x, want prefix % x", b, want)
	}
	// MODE SENSE(10) LLBAA: 16-byte descriptor, LONGLBA.
	b = mustIn(t, d, modeSense10(true, false, pcCurrent, pageControl, 0, 255), 255)
	if int(be16(b)) != len(b)-2 || b[4] != 0x01 || be16(b[6:]) != 16 || be64(b[8:]) != testBlocks || be32(b[20:]) != 512 {
		t.Errorf("MODE SENSE(10) LLBAA control = % x", b)
	}
	ctl := b[24:]
	// SPC-5: 0Ah, length 0Ah, GLTSD, QAM 1.
	if want := []byte{0x0a, 0x0a, 0x02, 0x10}; !bytes.Equal(ctl[:4], want) {
		t.Errorf("control page % x, want prefix % x", ctl, want)
	}
	// Write cache off and read-only show in WCE and WP.
	d.SetWriteCache(false)
	d.SetReadOnly(true)
	b = mustIn(t, d, modeSense6(true, pcCurrent, pageCaching, 0, 255), 255)
	if b[2] != 0x90 || b[3] != 0 || b[4+2]&0x04 != 0 {
		t.Errorf("MODE SENSE(6) DBD, WCE off, read-only = % x", b)
	}
	// Allocation length truncation keeps the header's full length.
	b = mustIn(t, d, modeSense6(false, pcCurrent, 0x3f, 0, 4), 255)
	if len(b) != 4 || int(b[0]) != 3+8+12+20+12+12 {
		t.Errorf("MODE SENSE(6) alloc 4 = % x", b)
	}
}

func TestModeSenseErrors(t *testing.T) {
	d, _ := newDisk(t, nil)
	tests := []struct {
		name       string
		cdb        []byte
		want       *Error
		field, bit int
	}{
		{"saved values", modeSense6(false, pcSaved, 0x08, 0, 255), ErrSavingParamsUnsupported, 2, 7},
		{"unknown page", modeSense6(false, 0, 0x19, 0, 255), ErrInvalidFieldInCDB, 2, 5},
		{"subpage of caching", modeSense6(false, 0, 0x08, 0x01, 255), ErrInvalidFieldInCDB, 3, 7},
		{"all pages, subpage 01h", modeSense6(false, 0, 0x3f, 0x01, 255), ErrInvalidFieldInCDB, 3, 7},
		{"LLBAA in MODE SENSE(6)", []byte{0x1a, 0x10, 0x3f, 0, 255, 0}, ErrInvalidFieldInCDB, 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exec(t, d, tt.cdb, make([]byte, 255))
			wantErr(t, err, tt.want, tt.field, tt.bit)
		})
	}
	// Subpage FFh of a page without subpages is the page itself.
	a := mustIn(t, d, modeSense6(true, 0, 0x08, 0xff, 255), 255)
	b := mustIn(t, d, modeSense6(true, 0, 0x08, 0x00, 255), 255)
	if !bytes.Equal(a, b) {
		t.Errorf("subpage FFh % x != subpage 0 % x", a, b)
	}
}

// modeSelectList builds a MODE SELECT(10) parameter list: header with
// the given block descriptor, then pages.
func modeSelectList(bd []byte, pages ...[]byte) []byte {
	p := make([]byte, 8)
	put16(p[6:], uint16(len(bd)))
	p = append(p, bd...)
	for _, pg := range pages {
		p = append(p, pg...)
	}
	return p
}

func modeSelect10(n int) []byte {
	return []byte{0x55, 0x10, 0, 0, 0, 0, 0, byte(n >> 8), byte(n), 0}
}

func TestModeSelect(t *testing.T) {
	d, _ := newDisk(t, nil)
	caching, _ := d.modePage(pageCaching, pcCurrent)
	control, _ := d.modePage(pageControl, pcCurrent)

	// Turn the write cache off: WCE is changeable.
	off := bytes.Clone(caching)
	off[2] &^= 0x04
	p := modeSelectList(nil, off)
	mustOK(t, d, modeSelect10(len(p)), p)
	if d.WriteCache() {
		t.Fatal("WCE still set after MODE SELECT")
	}
	b := mustIn(t, d, modeSense6(true, pcCurrent, pageCaching, 0, 255), 255)
	if b[4+2]&0x04 != 0 {
		t.Errorf("MODE SENSE after MODE SELECT WCE=0: % x", b)
	}
	// Defaults stay.
	b = mustIn(t, d, modeSense6(true, pcDefault, pageCaching, 0, 255), 255)
	if b[4+2]&0x04 == 0 {
		t.Errorf("default WCE changed: % x", b)
	}
	// PS set (as MODE SENSE might return it) is ignored; the block
	// descriptor may repeat the current values, or give 0 blocks.
	on := bytes.Clone(caching)
	on[0] |= 0x80
	bd := []byte{0, 0, 0x10, 0x00, 0, 0, 0x02, 0x00}
	p = modeSelectList(bd, on, control)
	mustOK(t, d, modeSelect10(len(p)), p)
	if !d.WriteCache() {
		t.Fatal("WCE not set again")
	}
	p = modeSelectList([]byte{0, 0, 0, 0, 0, 0, 0x02, 0x00})
	mustOK(t, d, modeSelect10(len(p)), p)

	// MODE SELECT(6) works the same way.
	p6 := append([]byte{0, 0, 0, 0}, off...)
	mustOK(t, d, []byte{0x15, 0x10, 0, 0, byte(len(p6)), 0}, p6)
	if d.WriteCache() {
		t.Error("MODE SELECT(6) did not clear WCE")
	}
	// A length of 0 is not an error.
	mustOK(t, d, modeSelect10(0))
}

func TestModeSelectErrors(t *testing.T) {
	d, _ := newDisk(t, nil)
	caching, _ := d.modePage(pageCaching, pcCurrent)
	rcd := bytes.Clone(caching)
	rcd[2] |= 0x01 // RCD is not changeable
	badLen := bytes.Clone(caching)
	badLen[1] = 0x0a
	sub := bytes.Clone(caching)
	sub[0] |= 0x40
	unknown := []byte{0x19, 0x06, 0, 0, 0, 0, 0, 0}
	tests := []struct {
		name       string
		cdb        []byte
		list       []byte
		want       *Error
		field, bit int
	}{
		{"non-changeable bit", nil, modeSelectList(nil, rcd), ErrInvalidFieldInParamList, 8 + 2, 0},
		{"page length", nil, modeSelectList(nil, badLen), ErrInvalidFieldInParamList, 8 + 1, 7},
		{"subpage format", nil, modeSelectList(nil, sub), ErrInvalidFieldInParamList, 8, 6},
		{"unknown page", nil, modeSelectList(nil, unknown), ErrInvalidFieldInParamList, 8, 5},
		{"truncated page", nil, modeSelectList(nil, caching[:10]), ErrParamListLengthError, -1, -1},
		{"block length", nil, modeSelectList([]byte{0, 0, 0, 0, 0, 0, 0x10, 0x00}), ErrInvalidFieldInParamList, 8 + 5, 7},
		{"block count", nil, modeSelectList([]byte{0, 0, 0, 5, 0, 0, 0x02, 0x00}), ErrInvalidFieldInParamList, 8, 7},
		{"descriptor length", nil, modeSelectList([]byte{0, 0, 0, 0}), ErrInvalidFieldInParamList, 6, 7},
		{"medium type", nil, []byte{0, 0, 1, 0, 0, 0, 0, 0}, ErrInvalidFieldInParamList, 2, 7},
		{"mode data length", nil, []byte{0, 6, 0, 0, 0, 0, 0, 0}, ErrInvalidFieldInParamList, 0, 7},
		{"short header", modeSelect10(4), []byte{0, 0, 0, 0}, ErrParamListLengthError, -1, -1},
		{"list shorter than its length", modeSelect10(40), modeSelectList(nil), ErrParamListLengthError, -1, -1},
		{"SP", []byte{0x55, 0x11, 0, 0, 0, 0, 0, 0, 8, 0}, make([]byte, 8), ErrInvalidFieldInCDB, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cdb := tt.cdb
			if cdb == nil {
				cdb = modeSelect10(len(tt.list))
			}
			_, err := exec(t, d, cdb, tt.list)
			wantErr(t, err, tt.want, tt.field, tt.bit)
			if !d.WriteCache() {
				t.Error("a rejected MODE SELECT changed WCE")
			}
		})
	}
}

// TestModeSelectAtomic: a list whose second page is bad changes nothing.
func TestModeSelectAtomic(t *testing.T) {
	d, _ := newDisk(t, nil)
	caching, _ := d.modePage(pageCaching, pcCurrent)
	control, _ := d.modePage(pageControl, pcCurrent)
	caching[2] &^= 0x04
	control[3] = 0x00 // QUEUE ALGORITHM MODIFIER is not changeable
	p := modeSelectList(nil, caching, control)
	_, err := exec(t, d, modeSelect10(len(p)), p)
	wantErr(t, err, ErrInvalidFieldInParamList, 8+20+3, 4)
	if !d.WriteCache() {
		t.Error("WCE changed by a rejected list")
	}
}
