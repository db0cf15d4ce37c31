// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"fmt"
	"strings"
)

// The standard INQUIRY data claims SPC-4 (VERSION 06h) with the version
// descriptors SAM-5, SPC-4, SBC-3 and SBC-4 (SPC-5 table "Version
// descriptor values", all "no version claimed").
//
// Why not VERSION 07h (SPC-5): the behaviour follows SPC-5 and SBC-4,
// but every command the disk implements is also as SPC-4 and SBC-3
// define it, so the older claim is true as well, and it is the one
// initiators already know from LIO: the kernel's own emulation (fileio,
// iblock) answers VERSION 06h, and conformance tools that predate SPC-5
// (libiscsi's iscsi-test-cu) accept 04h-06h only. SBC-3 is listed
// because initiators and tools look for it to trust the SBC-3 sized Block
// Limits VPD page; SBC-4 because the disk implements it.
const (
	inquiryVersion = 0x06   // VERSION: SPC-4
	versionSAM5    = 0x00A0 // SAM-5 (no version claimed)
	versionSPC4    = 0x0460 // SPC-4 (no version claimed)
	versionSBC3    = 0x04C0 // SBC-3 (no version claimed)
	versionSBC4    = 0x0600 // SBC-4 (no version claimed)
)

// VPD page codes (SPC-5, SBC-4).
const (
	vpdSupportedPages    = 0x00
	vpdUnitSerial        = 0x80
	vpdDeviceID          = 0x83
	vpdExtendedInquiry   = 0x86
	vpdBlockLimits       = 0xB0
	vpdBlockDevChars     = 0xB1
	vpdLogicalBlockProv  = 0xB2
	inquiryStdLen        = 74 // through the eighth version descriptor
	maxCompareAndWriteBl = 255
)

// vpdPages lists the supported VPD pages in ascending order (SPC-5
// 7.7.16).
var vpdPages = []byte{vpdSupportedPages, vpdUnitSerial, vpdDeviceID, vpdExtendedInquiry, vpdBlockLimits, vpdBlockDevChars, vpdLogicalBlockProv}

// pad returns s left-aligned in n bytes, space padded (SPC-5).
func pad(s string, n int) []byte {
	b := []byte(s + strings.Repeat(" ", n))
	return b[:n]
}

// inquiry runs INQUIRY (SPC-5): standard data, or the VPD page of
// PAGE CODE when EVPD is set. A PAGE CODE without EVPD, or an unsupported
// page, is INVALID FIELD IN CDB on byte 2.
func (d *Disk) inquiry(c *CDB, data [][]byte) (Result, error) {
	evpd := c.raw[1]&0x01 != 0
	page := c.raw[2]
	if !evpd {
		if page != 0 {
			return Result{}, cdbField(2, 7)
		}
		return reply(data, d.standardInquiry(), c.Length), nil
	}
	p, ok := d.vpdPage(page)
	if !ok {
		return Result{}, cdbField(2, 7)
	}
	return reply(data, p, c.Length), nil
}

// standardInquiry is the standard INQUIRY data (SPC-5).
func (d *Disk) standardInquiry() []byte {
	b := make([]byte, inquiryStdLen)
	b[0] = 0x00 // PERIPHERAL QUALIFIER 000b, DEVICE TYPE 00h (direct access)
	b[1] = 0x00 // RMB=0: not removable
	b[2] = inquiryVersion
	b[3] = 0x12              // HISUP=1, RESPONSE DATA FORMAT=2
	b[4] = inquiryStdLen - 5 // ADDITIONAL LENGTH: the bytes after byte 4
	b[5] = 0x08 | d.tpgs()   // 3PC: EXTENDED COPY is supported; TPGS (alua.go); PROTECT=0
	b[6] = 0x00
	b[7] = 0x02 // CMDQUE
	copy(b[8:], pad(d.cfg.Vendor, 8))
	copy(b[16:], pad(d.cfg.Product, 16))
	copy(b[32:], pad(d.cfg.Revision, 4))
	for i, v := range []uint16{versionSAM5, versionSPC4, versionSBC3, versionSBC4} {
		put16(b[58+2*i:], v)
	}
	return b
}

// vpdPage builds VPD page code, or reports it unsupported.
func (d *Disk) vpdPage(code byte) ([]byte, bool) {
	var body []byte
	switch code {
	case vpdSupportedPages:
		body = vpdPages
	case vpdUnitSerial:
		body = []byte(d.cfg.Serial)
	case vpdDeviceID:
		body = d.deviceID()
	case vpdExtendedInquiry:
		body = d.extendedInquiry()
	case vpdBlockLimits:
		body = d.blockLimits()
	case vpdBlockDevChars:
		body = make([]byte, 0x3c)
		put16(body[0:], 0x0001) // MEDIUM ROTATION RATE: non-rotating medium
		body[4] = 0x02          // FUAB: SYNCHRONIZE CACHE of a range makes it durable
	case vpdLogicalBlockProv:
		body = d.provisioningVPD()
	default:
		return nil, false
	}
	// SPC-5: PERIPHERAL QUALIFIER/DEVICE TYPE, PAGE CODE, PAGE LENGTH.
	p := make([]byte, 4, 4+len(body))
	p[1] = code
	put16(p[2:], uint16(len(body)))
	return append(p, body...), true
}

// deviceID is the body of the Device Identification VPD page (SPC-5
// 7.7.6): the NAA IEEE Registered Extended designator, a T10 vendor ID
// designator and a SCSI name string, all with logical unit association.
// With Config.ALUA, the relative target port and target port group
// designators follow (alua.go).
func (d *Disk) deviceID() []byte {
	var b []byte
	desc := func(codeSet, typ byte, id []byte) {
		// PROTOCOL IDENTIFIER 0, CODE SET; PIV 0, ASSOCIATION 00b (LU),
		// DESIGNATOR TYPE; reserved; DESIGNATOR LENGTH.
		b = append(b, codeSet, typ, 0, byte(len(id)))
		b = append(b, id...)
	}
	desc(0x1, 0x3, d.cfg.NAA[:])
	desc(0x2, 0x1, append(pad(d.cfg.Vendor, 8), d.cfg.Serial...))
	// SPC-5: "naa." and the hex digits, null terminated and
	// padded with nulls to a multiple of four bytes.
	name := []byte(fmt.Sprintf("naa.%X", d.cfg.NAA[:]))
	name = append(name, make([]byte, 4-len(name)%4)...)
	desc(0x3, 0x8, name)
	return append(b, d.aluaDesignators()...)
}

// extendedInquiry is the body of the Extended INQUIRY Data VPD page
// (SPC-5).
func (d *Disk) extendedInquiry() []byte {
	b := make([]byte, 0x3c)
	b[1] = 0x07 // HEADSUP, ORDSUP, SIMPSUP: all task attributes
	b[2] = 0x01 // V_SUP: a volatile cache (WCE is changeable)
	return b
}

// blockLimits is the body of the Block Limits VPD page (SBC-4).
func (d *Disk) blockLimits() []byte {
	b := make([]byte, 0x3c)
	c := &d.cfg
	ppb := c.PhysicalBlockSize / c.BlockSize
	b[0] = 0x01 // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is rejected
	b[1] = byte(min(maxCompareAndWriteBl, c.MaxTransferBlocks/2))
	put16(b[2:], uint16(min(ppb, 0xffff))) // OPTIMAL TRANSFER LENGTH GRANULARITY
	put32(b[4:], c.MaxTransferBlocks)
	put32(b[8:], c.OptimalTransferBlocks)
	put32(b[12:], c.MaxTransferBlocks) // MAXIMUM PREFETCH LENGTH
	if c.ThinProvisioning {
		put32(b[16:], c.MaxUnmapBlocks)
		put32(b[20:], c.MaxUnmapDescriptors)
		put32(b[24:], ppb) // OPTIMAL UNMAP GRANULARITY
		put32(b[28:], 0x80000000)
	}
	put64(b[32:], uint64(c.MaxWriteSameBlocks))
	return b
}

// provisioningVPD is the body of the Logical Block Provisioning VPD page
// (SBC-4).
func (d *Disk) provisioningVPD() []byte {
	b := make([]byte, 4)
	if d.cfg.ThinProvisioning {
		// LBPU, LBPWS, LBPWS10, LBPRZ=001b (unmapped blocks read as
		// zeros); ANC_SUP=0, DP=0.
		b[1] = 0x80 | 0x40 | 0x20 | 0x04
		b[2] = 0x02 // PROVISIONING TYPE: thin
	}
	return b
}

// readCapacity10 runs READ CAPACITY(10) (SBC-4). A last LBA above
// FFFFFFFEh is reported as FFFFFFFFh, which sends the initiator to READ
// CAPACITY(16). LBA without PMI is INVALID FIELD IN CDB.
func (d *Disk) readCapacity10(c *CDB, data [][]byte) (Result, error) {
	if c.raw[8]&0x01 == 0 && c.LBA != 0 {
		return Result{}, cdbField(2, 7)
	}
	b := make([]byte, 8)
	put32(b, uint32(min(d.capacity()-1, 0xffffffff)))
	put32(b[4:], d.cfg.BlockSize)
	return reply(data, b, 8), nil
}

// readCapacity16 runs READ CAPACITY(16) (SBC-4).
func (d *Disk) readCapacity16(c *CDB, data [][]byte) (Result, error) {
	if c.raw[14]&0x01 == 0 && c.LBA != 0 {
		return Result{}, cdbField(2, 7)
	}
	b := make([]byte, 32)
	put64(b, d.capacity()-1)
	put32(b[8:], d.cfg.BlockSize)
	b[12] = 0x10 // RC BASIS 01b: the last LBA of the logical unit; no PI
	b[13] = d.physExp & 0x0f
	if d.cfg.ThinProvisioning {
		b[14] = 0x80 | 0x40 // LBPME, LBPRZ; LOWEST ALIGNED LBA 0
	}
	return reply(data, b, c.Length), nil
}

// testUnitReady runs TEST UNIT READY (SPC-5): Execute has checked
// readiness already.
func (d *Disk) testUnitReady(c *CDB, data [][]byte) (Result, error) {
	return Result{}, nil
}

// requestSense runs REQUEST SENSE (SPC-5). Sense data goes with
// every CHECK CONDITION (autosense), so there is none left to return but
// the pollable kind: a pending unit attention (which it clears), the
// not-ready state, or NO SENSE. DESC selects descriptor format.
func (d *Disk) requestSense(c *CDB, data [][]byte) (Result, error) {
	e := d.takeUA()
	switch {
	case e != nil:
	case d.offline.Load():
		e = ErrNotReadyManual
	case d.stopped.Load():
		e = ErrNotReadyStopped
	default:
		e = ErrNoSense
	}
	var b []byte
	if c.raw[1]&0x01 != 0 {
		b = e.Descriptor(nil)
	} else {
		b = e.Fixed(nil)
	}
	return reply(data, b, c.Length), nil
}
