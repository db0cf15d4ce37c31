// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// fakeALUA is an ALUA provider with a settable local state.
type fakeALUA struct {
	local   LocalPort
	state   atomic.Uint32
	remote  []PortGroup
	refused atomic.Int32
}

func (f *fakeALUA) Local() LocalPort   { return f.local }
func (f *fakeALUA) State() AccessState { return AccessState(f.state.Load()) }
func (f *fakeALUA) Refused()           { f.refused.Add(1) }
func (f *fakeALUA) set(s AccessState)  { f.state.Store(uint32(s)) }
func (f *fakeALUA) PortGroups() []PortGroup {
	local := PortGroup{ID: f.local.Group, State: f.State(), Preferred: true, Implicit: true, Ports: []uint16{f.local.RelativePort}}
	return append([]PortGroup{local}, f.remote...)
}

// newALUADisk is newDisk with the local port in group 0x0101, relative
// port 0x0002, and a remote group 0x0202 in standby with port 0x0003.
func newALUADisk(t *testing.T) (*Disk, *fakeALUA) {
	t.Helper()
	a := &fakeALUA{
		local:  LocalPort{Group: 0x0101, RelativePort: 0x0002, TransitionSecs: 30},
		remote: []PortGroup{{ID: 0x0202, State: StateStandby, Ports: []uint16{0x0003}}},
	}
	d, _ := newDisk(t, func(c *Config) { c.ALUA = a })
	return d, a
}

func rtpgCDB(ext bool, alloc uint32) []byte {
	b := []byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if ext {
		b[1] |= 0x20 // PARAMETER DATA FORMAT 001b
	}
	put32(b[6:], alloc)
	return b
}

func TestALUAInquiryTPGS(t *testing.T) {
	plain, _ := newDisk(t, nil)
	d, _ := newALUADisk(t)
	// SPC-4 r17 6.4.2 table 135: TPGS is byte 5 bits 5-4; 00b no
	// ALUA, 01b implicit only.
	for _, tt := range []struct {
		name string
		d    *Disk
		want byte
	}{{"no ALUA", plain, 0x00}, {"ALUA", d, 0x10}} {
		b := mustIn(t, tt.d, inquiryCDB(false, 0, 255), 255)
		if got := b[5] & 0x30; got != tt.want {
			t.Errorf("%s: INQUIRY TPGS bits = %#x, want %#x", tt.name, got, tt.want)
		}
		if b[5]&0x08 == 0 {
			t.Errorf("%s: INQUIRY lost 3PC", tt.name)
		}
	}
}

// designator is one designation descriptor of VPD page 83h.
type designator struct {
	codeSet, assoc, typ byte
	id                  []byte
}

func designators(t *testing.T, page []byte) []designator {
	t.Helper()
	if int(be16(page[2:])) != len(page)-4 {
		t.Fatalf("VPD 83h PAGE LENGTH %d, page is %d bytes", be16(page[2:]), len(page))
	}
	var ds []designator
	for p := page[4:]; len(p) > 0; {
		if len(p) < 4 || len(p) < 4+int(p[3]) {
			t.Fatalf("VPD 83h: truncated designator % x", p)
		}
		n := int(p[3])
		ds = append(ds, designator{codeSet: p[0] & 0x0f, assoc: p[1] >> 4 & 0x03, typ: p[1] & 0x0f, id: p[4 : 4+n]})
		p = p[4+n:]
	}
	return ds
}

func TestALUADeviceIDDesignators(t *testing.T) {
	plain, _ := newDisk(t, nil)
	d, _ := newALUADisk(t)
	base := mustIn(t, plain, inquiryCDB(true, 0x83, 1024), 1024)
	page := mustIn(t, d, inquiryCDB(true, 0x83, 1024), 1024)
	golden(t, "vpd_83_alua", page)
	// The logical unit designators are unchanged; the target port ones
	// follow them.
	if !bytes.Equal(page[4:len(base)], base[4:]) {
		t.Errorf("VPD 83h with ALUA changed the logical unit designators")
	}
	for _, dd := range designators(t, base) {
		if dd.assoc != 0 {
			t.Errorf("VPD 83h without ALUA has a designator with association %d", dd.assoc)
		}
	}
	// SPC-4 r17 7.6.3.8 (relative target port, type 4h) and 7.6.3.9
	// (target port group, type 5h): binary, association 01b (target
	// port), 4 bytes of which the last two are the identifier.
	want := map[byte]uint16{0x4: 0x0002, 0x5: 0x0101}
	for _, dd := range designators(t, page) {
		w, ok := want[dd.typ]
		if !ok {
			continue
		}
		delete(want, dd.typ)
		if dd.codeSet != 1 || dd.assoc != 1 || len(dd.id) != 4 || be16(dd.id) != 0 || be16(dd.id[2:]) != w {
			t.Errorf("VPD 83h designator type %#x = %+v, want binary, target port, 00 00 %04x", dd.typ, dd, w)
		}
	}
	if len(want) != 0 {
		t.Errorf("VPD 83h lacks designator types %v", want)
	}
}

func TestReportTargetPortGroups(t *testing.T) {
	d, a := newALUADisk(t)
	// SPC-4 r36 6.37: length only header (RETURN DATA LENGTH n-3), then
	// per group: PREF|ASYMMETRIC ACCESS STATE, T_SUP O_SUP LBD_SUP U_SUP
	// S_SUP AN_SUP AO_SUP, TARGET PORT GROUP, reserved, STATUS CODE,
	// vendor specific, TARGET PORT COUNT; per port: obsolete (2),
	// RELATIVE TARGET PORT IDENTIFIER.
	want := []byte{
		0, 0, 0, 24,
		0x80, 0x8f, 0x01, 0x01, 0, 0x02, 0, 1, 0, 0, 0x00, 0x02,
		0x02, 0x8f, 0x02, 0x02, 0, 0x00, 0, 1, 0, 0, 0x00, 0x03,
	}
	if got := mustIn(t, d, rtpgCDB(false, 512), 512); !bytes.Equal(got, want) {
		t.Errorf("RTPG =\n% x\nwant\n% x", got, want)
	}
	// Extended header: FORMAT TYPE 001b in byte 4, IMPLICIT TRANSITION
	// TIME in byte 5, and RETURN DATA LENGTH still counts every byte
	// after itself.
	wantExt := append([]byte{0, 0, 0, 28, 0x10, 30, 0, 0}, want[4:]...)
	if got := mustIn(t, d, rtpgCDB(true, 512), 512); !bytes.Equal(got, wantExt) {
		t.Errorf("RTPG extended =\n% x\nwant\n% x", got, wantExt)
	}
	// The state follows the provider.
	a.set(StateTransitioning)
	if got := mustIn(t, d, rtpgCDB(false, 512), 512); got[4] != 0x8f {
		t.Errorf("RTPG in transition: byte 4 = %#x, want 8fh", got[4])
	}
	// Allocation length: a plain prefix, the header always says the full
	// length (libiscsi test_rtpg_alloc_length cuts descriptors in half).
	full := mustIn(t, d, rtpgCDB(false, 512), 512)
	for _, n := range []uint32{0, 3, 4, 8, 12, 16, 27, 28} {
		got := mustIn(t, d, rtpgCDB(false, n), 512)
		if !bytes.Equal(got, full[:min(int(n), len(full))]) {
			t.Errorf("RTPG alloc %d = % x, want prefix of % x", n, got, full)
		}
	}
}

func TestReportTargetPortGroupsWithoutALUA(t *testing.T) {
	d, _ := newDisk(t, nil)
	_, err := exec(t, d, rtpgCDB(false, 512), make([]byte, 512))
	wantErr(t, err, ErrInvalidOpcode, -1, -1)
	a, _ := newALUADisk(t)
	for _, tt := range []struct {
		d    *Disk
		want bool
	}{{d, false}, {a, true}} {
		b := mustIn(t, tt.d, rsocCDB(false, 0, 0, 0, 8192), 8192)
		rtpg, stpg := false, false
		for p := b[4:]; len(p) > 0; p = p[8:] {
			switch {
			case Opcode(p[0]) == OpMaintenanceIn && be16(p[2:]) == SAReportTargetPortGroups:
				rtpg = true
				if be16(p[6:]) != 12 {
					t.Errorf("RSOC: RTPG CDB length %d", be16(p[6:]))
				}
			case Opcode(p[0]) == OpMaintenanceOut:
				stpg = true
			}
		}
		if rtpg != tt.want || stpg {
			t.Errorf("RSOC (ALUA %v) lists RTPG %v STPG %v, want %v false", tt.want, rtpg, stpg, tt.want)
		}
	}
	// RSOC of the one command gives its usage data: format bit 5 and
	// the service action.
	b := mustIn(t, a, rsocCDB(false, 2, OpMaintenanceIn, SAReportTargetPortGroups, 64), 64)
	if b[1]&0x07 != 0x03 || !bytes.Equal(b[4:6], []byte{0xa3, 0x2a}) {
		t.Errorf("RSOC one RTPG = % x", b)
	}
}

func TestALUAStateAccess(t *testing.T) {
	// Commands and what each state answers (SPC-4 r17 5.9.2.4.2-5,
	// 5.9.2.5); nil is GOOD. READ CAPACITY in standby follows LIO
	// (alua.go).
	type cmd struct {
		name  string
		cdb   []byte
		write bool // refusing it calls Refused
		data  int  // data buffer length; 0: 8192
	}
	read := cmd{"READ(10)", cdb10(OpRead10, 0, 1), false, 0}
	write := cmd{"WRITE(10)", cdb10(OpWrite10, 0, 1), true, 0}
	// WRITE SAME's data-out is exactly one block (SBC-4 5.50).
	ws := cmd{"WRITE SAME(16)", cdb16(OpWriteSame16, 0, 1), true, 512}
	tur := cmd{"TEST UNIT READY", []byte{0, 0, 0, 0, 0, 0}, false, 0}
	sync := cmd{"SYNCHRONIZE CACHE(10)", cdb10(OpSynchronizeCache10, 0, 0), false, 0}
	inq := cmd{"INQUIRY", inquiryCDB(false, 0, 96), false, 0}
	vpd := cmd{"INQUIRY VPD 83h", inquiryCDB(true, 0x83, 255), false, 0}
	rs := cmd{"REQUEST SENSE", []byte{0x03, 0, 0, 0, 18, 0}, false, 0}
	rtpg := cmd{"RTPG", rtpgCDB(false, 255), false, 0}
	sense := cmd{"MODE SENSE(6)", []byte{0x1a, 0x08, 0x3f, 0, 255, 0}, false, 0}
	rc10 := cmd{"READ CAPACITY(10)", []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, 0}
	rc16 := cmd{"READ CAPACITY(16)", []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, false, 0}
	rsoc := cmd{"REPORT SUPPORTED OPERATION CODES", rsocCDB(false, 0, 0, 0, 8192), false, 0}
	all := []cmd{read, write, ws, tur, sync, inq, vpd, rs, rtpg, sense, rc10, rc16, rsoc}
	ok := func(cs ...cmd) map[string]bool {
		m := map[string]bool{}
		for _, c := range cs {
			m[c.name] = true
		}
		return m
	}
	for _, tt := range []struct {
		state AccessState
		ok    map[string]bool
		err   *Error
	}{
		{StateActiveOptimized, ok(all...), nil},
		{StateActiveNonOptimized, ok(all...), nil},
		{StateStandby, ok(inq, vpd, rs, rtpg, sense, rc10, rc16), ErrALUAStandby},
		{StateUnavailable, ok(inq, vpd, rs, rtpg), ErrALUAUnavailable},
		{StateTransitioning, ok(inq, vpd, rs, rtpg), ErrALUATransitioning},
	} {
		t.Run(tt.state.String(), func(t *testing.T) {
			d, a := newALUADisk(t)
			a.set(tt.state)
			wantRefused := int32(0)
			for _, c := range all {
				n := c.data
				if n == 0 {
					n = 8192
				}
				_, err := exec(t, d, c.cdb, make([]byte, n))
				if tt.ok[c.name] {
					if err != nil {
						t.Errorf("%s in %v = %v, want GOOD", c.name, tt.state, err)
					}
					continue
				}
				if !errors.Is(err, tt.err) {
					t.Errorf("%s in %v = %v, want %v", c.name, tt.state, err, tt.err)
				}
				if c.write {
					wantRefused++
				}
			}
			if got := a.refused.Load(); got != wantRefused {
				t.Errorf("Refused called %d times, want %d (once per refused write)", got, wantRefused)
			}
		})
	}
}

func TestALUARefusedWriteLeavesMediumAlone(t *testing.T) {
	d, a := newALUADisk(t)
	a.set(StateStandby)
	block := pattern(512, 9)
	_, err := exec(t, d, cdb10(OpWrite10, 7, 1), block)
	wantErr(t, err, ErrALUAStandby, -1, -1)
	a.set(StateActiveOptimized)
	got := mustIn(t, d, cdb10(OpRead10, 7, 1), 512)
	if bytes.Equal(got, block) {
		t.Error("a WRITE refused in standby reached the medium")
	}
}

func TestALUAStateChangedUnitAttention(t *testing.T) {
	plain, _ := newDisk(t, nil)
	plain.AccessStateChanged()
	mustOK(t, plain, cdb10(OpRead10, 0, 1), make([]byte, 512))

	d, _ := newALUADisk(t)
	d.AccessStateChanged()
	// INQUIRY and RTPG neither report nor clear it (SAM-5, and scsi_dh_alua
	// sends RTPG to learn the new states).
	mustIn(t, d, inquiryCDB(false, 0, 96), 96)
	mustIn(t, d, rtpgCDB(false, 255), 255)
	_, err := exec(t, d, cdb10(OpRead10, 0, 1), make([]byte, 512))
	wantErr(t, err, ErrAccessStateChanged, -1, -1)
	mustOK(t, d, cdb10(OpRead10, 0, 1), make([]byte, 512))
	if s := ErrAccessStateChanged.Error(); s != "scsi: UNIT ATTENTION 06/2A/06: asymmetric access state changed" {
		t.Errorf("Error() = %q", s)
	}
}

func TestALUAConfig(t *testing.T) {
	a := &fakeALUA{local: LocalPort{Group: 1}}
	cfg := Config{BlockSize: 512, Blocks: 8, Serial: "x", ALUA: a}
	if _, err := NewDisk(cfg, nil); err == nil {
		t.Fatal("NewDisk(nil backend) succeeded")
	}
	_, mem := newDisk(t, nil)
	if _, err := NewDisk(cfg, mem); err == nil {
		t.Error("NewDisk accepted relative target port 0")
	}
}

func TestAccessStateString(t *testing.T) {
	for s, want := range map[AccessState]string{
		StateActiveOptimized: "active/optimized", StateStandby: "standby",
		StateTransitioning: "transitioning", 0x4: "AccessState(0x4)",
	} {
		if got := fmt.Sprint(s); got != want {
			t.Errorf("AccessState(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
}
