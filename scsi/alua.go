// SPDX-License-Identifier: Apache-2.0

package scsi

import "fmt"

// Asymmetric logical unit access (ALUA, SPC-4 5.9 in r17; 5.16 in r37).
//
// Several gateways can export one logical unit, each through its own
// target port group. TCMU does not tell the handler which target port a
// command arrived on, so a disk speaks for one port only: the local one,
// that of the gateway it runs in. The ALUA interface supplies that port's
// identity and state, and the states of the other gateways' groups, which
// only the ownership layer (outside this package) knows.
//
// Transitions are implicit only (TPGS 01b): the device server changes
// states on its own, never on SET TARGET PORT GROUPS. A gateway decides
// only its own group's state (by taking or losing the ownership lease of
// the shared file); it cannot set another gateway's state synchronously,
// which an explicit transition of a remote group would need. Linux's
// scsi_dh_alua and dm-multipath follow implicit transitions through
// REPORT TARGET PORT GROUPS and the ASYMMETRIC ACCESS STATE CHANGED unit
// attention. SET TARGET PORT GROUPS is therefore not supported (INVALID
// COMMAND OPERATION CODE, and not listed by REPORT SUPPORTED OPERATION
// CODES), as SPC-4 allows when TPGS is 01b.

// AccessState is a target port asymmetric access state: the ASYMMETRIC
// ACCESS STATE field of REPORT TARGET PORT GROUPS (SPC-4 r36 6.37,
// table 307).
type AccessState uint8

// Asymmetric access states. Logical block dependent (4h) and offline (Eh)
// are not supported.
const (
	StateActiveOptimized    AccessState = 0x0
	StateActiveNonOptimized AccessState = 0x1
	StateStandby            AccessState = 0x2
	StateUnavailable        AccessState = 0x3
	StateTransitioning      AccessState = 0xF
)

func (s AccessState) String() string {
	switch s {
	case StateActiveOptimized:
		return "active/optimized"
	case StateActiveNonOptimized:
		return "active/non-optimized"
	case StateStandby:
		return "standby"
	case StateUnavailable:
		return "unavailable"
	case StateTransitioning:
		return "transitioning"
	}
	return fmt.Sprintf("AccessState(%#x)", uint8(s))
}

// supportedStates is the second byte of a target port group descriptor
// (SPC-4 r36 6.37, table 306): T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP.
const supportedStates = 0x80 | 0x08 | 0x04 | 0x02 | 0x01

// PortGroup is one target port group of the logical unit, as REPORT
// TARGET PORT GROUPS describes it.
type PortGroup struct {
	// ID is the TARGET PORT GROUP identifier; unique per logical unit.
	ID uint16
	// State is the group's current asymmetric access state.
	State AccessState
	// Preferred is the PREF bit: the group the initiator should use
	// when several are active.
	Preferred bool
	// Implicit says the last change of State was an implicit transition
	// (STATUS CODE 02h); false gives STATUS CODE 00h.
	Implicit bool
	// Ports are the RELATIVE TARGET PORT IDENTIFIERs of the group's
	// target ports.
	Ports []uint16
}

// LocalPort identifies the target port through which this disk is
// reached.
type LocalPort struct {
	// Group is the local TARGET PORT GROUP, which PortGroups must list.
	Group uint16
	// RelativePort is the local RELATIVE TARGET PORT IDENTIFIER (VPD page
	// 83h); unique per logical unit across gateways, and not 0.
	RelativePort uint16
	// TransitionSecs is the IMPLICIT TRANSITION TIME of the extended
	// REPORT TARGET PORT GROUPS header: how long, in seconds, an
	// initiator should allow a transition to take (0: unspecified).
	TransitionSecs uint8
}

// ALUA supplies the asymmetric access states of a disk's target port
// groups. A Config with ALUA set makes the disk report TPGS 01b (implicit
// ALUA), the target port designators in VPD page 83h and REPORT TARGET
// PORT GROUPS, and refuse the commands its local state does not allow.
// Its methods are called concurrently and must not block.
type ALUA interface {
	// Local returns the local target port; it must not change.
	Local() LocalPort
	// State returns the local target port group's state. The disk calls
	// it before every command, so it must be cheap (an atomic load).
	State() AccessState
	// PortGroups returns every target port group of the logical unit, the
	// local one included, in a stable order.
	PortGroups() []PortGroup
	// Refused tells that the local state has just refused a command
	// that writes the medium: an initiator is sending writes to this
	// port. The provider may start an implicit transition. Refused reads
	// do not count: udev and partition scans read every path.
	Refused()
}

// ALUA sense data (SPC-4 r17 annex D).
var (
	// ErrALUATransitioning is NOT READY, LOGICAL UNIT NOT ACCESSIBLE,
	// ASYMMETRIC ACCESS STATE TRANSITION.
	ErrALUATransitioning = &Error{Key: KeyNotReady, ASC: 0x04, ASCQ: 0x0A}
	// ErrALUAStandby is NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET
	// PORT IN STANDBY STATE.
	ErrALUAStandby = &Error{Key: KeyNotReady, ASC: 0x04, ASCQ: 0x0B}
	// ErrALUAUnavailable is NOT READY, LOGICAL UNIT NOT ACCESSIBLE,
	// TARGET PORT IN UNAVAILABLE STATE.
	ErrALUAUnavailable = &Error{Key: KeyNotReady, ASC: 0x04, ASCQ: 0x0C}
	// ErrAccessStateChanged is UNIT ATTENTION, ASYMMETRIC ACCESS STATE
	// CHANGED.
	ErrAccessStateChanged = &Error{Key: KeyUnitAttention, ASC: 0x2A, ASCQ: 0x06}
)

func init() {
	// Kept here rather than in sense.go's table so that ALUA stays in
	// one file.
	ascNames[0x040A] = "logical unit not accessible, asymmetric access state transition"
	ascNames[0x040B] = "logical unit not accessible, target port in standby state"
	ascNames[0x040C] = "logical unit not accessible, target port in unavailable state"
	ascNames[0x2A06] = "asymmetric access state changed"
}

// AccessStateChanged raises the ASYMMETRIC ACCESS STATE CHANGED unit
// attention, which SPC-4 asks for after an implicit transition; the ALUA
// provider's owner calls it after the local state changed. Like every
// unit attention of a Disk it is reported once, to the next initiator
// that sends a command other than INQUIRY, REPORT LUNS or REQUEST SENSE
// (TCMU does not say which I_T nexus a command came from), and it
// replaces a pending unit attention.
func (d *Disk) AccessStateChanged() {
	if d.cfg.ALUA != nil {
		d.raise(ErrAccessStateChanged)
	}
}

// aluaAllowed reports whether a target port in state s runs cmd.
//
// Standby (SPC-4 r17 5.9.2.4.4) allows INQUIRY, LOG SELECT/SENSE, MODE
// SELECT/SENSE, REPORT LUNS, RECEIVE DIAGNOSTIC RESULTS, SEND DIAGNOSTIC,
// REPORT and SET TARGET PORT GROUPS, REQUEST SENSE, PERSISTENT RESERVE
// IN/OUT and the echo buffer modes of READ/WRITE BUFFER; of these the
// disk has INQUIRY, MODE SELECT/SENSE, the diagnostics, REQUEST SENSE and
// REPORT TARGET PORT GROUPS (REPORT LUNS and PR stay in the kernel). Like
// LIO's own ALUA it also allows READ CAPACITY(10/16) in standby: Linux's
// sd probes the capacity of every path when it scans, and a probe that
// fails leaves the path's disk at size 0.
//
// Unavailable (5.9.2.4.5) allows INQUIRY, REPORT LUNS, REPORT and SET
// TARGET PORT GROUPS, REQUEST SENSE and the echo buffer modes; a
// transition in progress (5.9.2.5) allows the same but SET TARGET PORT
// GROUPS. Active states allow everything (5.9.2.4.2, 5.9.2.4.3).
func aluaAllowed(s AccessState, cmd *command) bool {
	switch cmd.op {
	case OpInquiry, OpRequestSense:
		return true
	case OpMaintenanceIn:
		if cmd.sa == SAReportTargetPortGroups {
			return true
		}
	}
	switch s {
	case StateActiveOptimized, StateActiveNonOptimized:
		return true
	case StateStandby:
		switch cmd.op {
		case OpModeSelect6, OpModeSelect10, OpModeSense6, OpModeSense10,
			OpReceiveDiagnosticResults, OpSendDiagnostic, OpReadCapacity10:
			return true
		case OpServiceActionIn16:
			return cmd.sa == SAReadCapacity16
		}
	}
	return false
}

// aluaCheck fails cmd with the sense of the local state if that state
// does not allow it (SPC-4 r17 5.9.2.4, 5.9.2.5), and tells the provider
// about refused writes.
func (d *Disk) aluaCheck(cmd *command) error {
	a := d.cfg.ALUA
	s := a.State()
	if aluaAllowed(s, cmd) {
		return nil
	}
	switch cmd.kind {
	case KindWrite, KindUnmap, KindWriteSame, KindCompareAndWrite:
		// Only writes: reads reach standby paths for probing (udev's
		// blkid, a partition scan) without a wish to move the LUN.
		a.Refused()
	}
	switch s {
	case StateStandby:
		return ErrALUAStandby
	case StateUnavailable:
		return ErrALUAUnavailable
	}
	return ErrALUATransitioning
}

// reportTargetPortGroups runs REPORT TARGET PORT GROUPS (SPC-4 r36
// 6.37). PARAMETER DATA FORMAT 000b gives the length only header, 001b
// the extended header with the local IMPLICIT TRANSITION TIME; other
// values are rejected by the CDB table. In both formats RETURN DATA
// LENGTH counts the bytes after itself (tables 302, 303: n - 3); LIO's
// own emulation leaves the extended header's last four bytes out. The
// data is cut at the allocation length like any other, mid-descriptor if
// need be, and always says the full length.
func (d *Disk) reportTargetPortGroups(c *CDB, data [][]byte) (Result, error) {
	ext := c.raw[1]&0xe0 == 0x20
	b := make([]byte, 4, 64)
	if ext {
		// FORMAT TYPE 001b, IMPLICIT TRANSITION TIME, reserved.
		b = append(b, 0x10, d.cfg.ALUA.Local().TransitionSecs, 0, 0)
	}
	for _, g := range d.cfg.ALUA.PortGroups() {
		var desc [8]byte
		desc[0] = byte(g.State) & 0x0f
		if g.Preferred {
			desc[0] |= 0x80 // PREF
		}
		desc[1] = supportedStates
		put16(desc[2:], g.ID)
		if g.Implicit {
			desc[5] = 0x02 // STATUS CODE: altered by implicit ALUA
		}
		desc[7] = byte(min(len(g.Ports), 0xff)) // TARGET PORT COUNT
		b = append(b, desc[:]...)
		for _, p := range g.Ports[:desc[7]] {
			// Target port descriptor: obsolete, RELATIVE TARGET PORT
			// IDENTIFIER.
			b = append(b, 0, 0, byte(p>>8), byte(p))
		}
	}
	put32(b, uint32(len(b)-4))
	return reply(data, b, c.Length), nil
}

// aluaDesignators are the target port designators of the Device
// Identification VPD page (SPC-4 r17 7.6.3.8, 7.6.3.9): the relative
// target port (type 4h) and the target port group (type 5h), both binary
// with target port association (01b). scsi_dh_alua reads the group from
// here to find its state in REPORT TARGET PORT GROUPS.
func (d *Disk) aluaDesignators() []byte {
	if d.cfg.ALUA == nil {
		return nil
	}
	l := d.cfg.ALUA.Local()
	return []byte{
		0x01, 0x14, 0, 4, 0, 0, byte(l.RelativePort >> 8), byte(l.RelativePort),
		0x01, 0x15, 0, 4, 0, 0, byte(l.Group >> 8), byte(l.Group),
	}
}

// tpgs is the TPGS field of standard INQUIRY data (SPC-4 r17 6.4.2,
// table 135), in place in byte 5: 01b, implicit ALUA only, with ALUA;
// 00b without.
func (d *Disk) tpgs() byte {
	if d.cfg.ALUA == nil {
		return 0
	}
	return 0x10
}
