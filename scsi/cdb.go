// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"encoding/binary"
	"math/bits"
)

// CDB is a decoded command descriptor block. ParseCDB fills the fields the
// command has; the others are zero. Every value fits the width of its CDB
// field.
type CDB struct {
	Op Opcode
	// ServiceAction is the SERVICE ACTION field (byte 1, bits 4-0) of the
	// opcodes that have one.
	ServiceAction uint8
	// LBA is the LOGICAL BLOCK ADDRESS field (21 bits in READ(6) and
	// WRITE(6)).
	LBA uint64
	// Blocks is the TRANSFER LENGTH, VERIFICATION LENGTH, PREFETCH LENGTH
	// or NUMBER OF LOGICAL BLOCKS field in logical blocks. For READ(6) and
	// WRITE(6) a TRANSFER LENGTH of 0 is 256 blocks (SBC-4).
	Blocks uint32
	// Length is the ALLOCATION LENGTH (data-in) or PARAMETER LIST LENGTH
	// (data-out) field in bytes.
	Length uint32

	raw [16]byte
	cmd *command
}

// Len is the length of the CDB in bytes.
func (c *CDB) Len() int { return len(c.cmd.usage) }

// Byte is byte i of the CDB (0 past its end).
func (c *CDB) Byte(i int) byte {
	if i < 0 || i >= len(c.raw) {
		return 0
	}
	return c.raw[i]
}

// FUA is the FORCE UNIT ACCESS bit (byte 1, bit 3) of the commands that
// have one: READ, WRITE (10/12/16) and COMPARE AND WRITE.
func (c *CDB) FUA() bool { return c.cmd.flags&fFUA != 0 && c.raw[1]&0x08 != 0 }

// DPO is the DISABLE PAGE OUT bit (byte 1, bit 4) of the commands that
// have one. The disk accepts and ignores it: it keeps no cache of its own.
func (c *CDB) DPO() bool { return c.cmd.flags&fDPO != 0 && c.raw[1]&0x10 != 0 }

// field is a big-endian field of a CDB: n bytes at off (n == 0: absent).
type field struct{ off, n uint8 }

func (f field) get(b []byte) uint64 {
	var v uint64
	for i := 0; i < int(f.n); i++ {
		v = v<<8 | uint64(b[int(f.off)+i])
	}
	return v
}

// cmdFlag describes how a command behaves.
type cmdFlag uint16

const (
	fMedium   cmdFlag = 1 << iota // needs a ready medium (online, started)
	fNoUA                         // neither reports nor clears a unit attention
	fThin                         // only with logical block provisioning
	fKernel                       // handled by the kernel, listed but never run
	fKernelPR                     // fKernel and only when Config.KernelPR
	fXCopy                        // third-party copy
	fFUA                          // byte 1 bit 3 is FUA
	fDPO                          // byte 1 bit 4 is DPO
	fSA                           // byte 1 bits 4-0 are a SERVICE ACTION
	fRead6                        // 21-bit LBA, TRANSFER LENGTH 0 means 256
	fALUA                         // only with Config.ALUA
)

// command describes one operation code (and service action): its CDB
// layout and its handler. usage is the CDB USAGE DATA of REPORT SUPPORTED
// OPERATION CODES (SPC-5): byte 0 is the opcode, the SERVICE ACTION
// field holds the service action, and every other bit is 1 where the disk
// accepts a non-zero value. ParseCDB rejects a CDB with a bit set outside
// usage, so the table is both the validation and the report.
type command struct {
	op     Opcode
	sa     uint8
	usage  []byte
	lba    field
	blocks field
	length field
	flags  cmdFlag
	kind   Kind
	exec   func(d *Disk, c *CDB, data [][]byte) (Result, error)
}

// Field layouts shared by the READ/WRITE families.
var (
	lba10 = field{2, 4}
	lba16 = field{2, 8}
	len10 = field{7, 2}
	len12 = field{6, 4}
	len16 = field{10, 4}
)

// commands is every operation this package knows, in opcode order; the
// order is that of the all-commands REPORT SUPPORTED OPERATION CODES data.
//
// The 0x3f in byte 6 (10-byte CDBs), byte 10 (12-byte) and byte 14
// (16-byte) of the SBC-4 commands is the 6-bit GROUP NUMBER field: a field
// SBC-4 defines for the grouping function (SBC-4 4.22), not a reserved
// one, so SPC-5's rule for non-zero reserved fields does not apply. The
// disk has no grouping function (GROUP_SUP=0) and ignores it, as LIO's
// own SBC emulation does; PRE-FETCH with GROUP NUMBER 3 must be GOOD.
var commands = []*command{
	{op: OpTestUnitReady, usage: []byte{0x00, 0, 0, 0, 0, 0}, flags: fMedium, exec: (*Disk).testUnitReady},
	{op: OpRequestSense, usage: []byte{0x03, 0x01, 0, 0, 0xff, 0}, length: field{4, 1}, flags: fNoUA, exec: (*Disk).requestSense},
	// FORMAT UNIT: LONGLIST, FMTDATA, CMPLST, DEFECT LIST FORMAT; no
	// protection information (FMTPINFO), no FFMT.
	{op: OpFormatUnit, usage: []byte{0x04, 0x3f, 0, 0, 0, 0}, flags: fMedium, exec: (*Disk).formatUnit},
	{op: OpRead6, usage: []byte{0x08, 0x1f, 0xff, 0xff, 0xff, 0}, lba: field{1, 3}, blocks: field{4, 1}, flags: fMedium | fRead6, kind: KindRead, exec: (*Disk).read},
	{op: OpWrite6, usage: []byte{0x0a, 0x1f, 0xff, 0xff, 0xff, 0}, lba: field{1, 3}, blocks: field{4, 1}, flags: fMedium | fRead6, kind: KindWrite, exec: (*Disk).write},
	{op: OpInquiry, usage: []byte{0x12, 0x01, 0xff, 0xff, 0xff, 0}, length: field{3, 2}, flags: fNoUA, exec: (*Disk).inquiry},
	{op: OpModeSelect6, usage: []byte{0x15, 0x11, 0, 0, 0xff, 0}, length: field{4, 1}, exec: (*Disk).modeSelect},
	{op: OpModeSense6, usage: []byte{0x1a, 0x08, 0xff, 0xff, 0xff, 0}, length: field{4, 1}, exec: (*Disk).modeSense},
	// START STOP UNIT: IMMED, NO_FLUSH, START; POWER CONDITION 0 only.
	{op: OpStartStopUnit, usage: []byte{0x1b, 0x01, 0, 0, 0x05, 0}, exec: (*Disk).startStopUnit},
	{op: OpReceiveDiagnosticResults, usage: []byte{0x1c, 0x01, 0xff, 0xff, 0xff, 0}, length: field{3, 2}, exec: (*Disk).receiveDiagnosticResults},
	{op: OpSendDiagnostic, usage: []byte{0x1d, 0xf7, 0, 0xff, 0xff, 0}, length: field{3, 2}, exec: (*Disk).sendDiagnostic},
	{op: OpPreventAllowMediumRemove, usage: []byte{0x1e, 0, 0, 0, 0x01, 0}, exec: (*Disk).preventAllow},
	{op: OpReadCapacity10, usage: []byte{0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0}, lba: lba10, flags: fMedium, exec: (*Disk).readCapacity10},
	{op: OpRead10, usage: []byte{0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium | fFUA | fDPO, kind: KindRead, exec: (*Disk).read},
	{op: OpWrite10, usage: []byte{0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium | fFUA | fDPO, kind: KindWrite, exec: (*Disk).write},
	{op: OpWriteAndVerify10, usage: []byte{0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium | fDPO, kind: KindWrite, exec: (*Disk).writeAndVerify},
	{op: OpVerify10, usage: []byte{0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium | fDPO, kind: KindRead, exec: (*Disk).verify},
	{op: OpPreFetch10, usage: []byte{0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium, exec: (*Disk).preFetch},
	{op: OpSynchronizeCache10, usage: []byte{0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium, kind: KindSync, exec: (*Disk).synchronizeCache},
	// WRITE SAME(10): UNMAP; no ANCHOR (ANC_SUP=0), WRPROTECT 0.
	{op: OpWriteSame10, usage: []byte{0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0}, lba: lba10, blocks: len10, flags: fMedium, kind: KindWriteSame, exec: (*Disk).writeSame},
	// UNMAP: no ANCHOR (ANC_SUP=0).
	{op: OpUnmap, usage: []byte{0x42, 0, 0, 0, 0, 0, 0x3f, 0xff, 0xff, 0}, length: field{7, 2}, flags: fMedium | fThin, kind: KindUnmap, exec: (*Disk).unmap},
	{op: OpModeSelect10, usage: []byte{0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0}, length: field{7, 2}, exec: (*Disk).modeSelect},
	{op: OpModeSense10, usage: []byte{0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0}, length: field{7, 2}, exec: (*Disk).modeSense},
	{op: OpPersistentReserveIn, sa: 0x00, usage: []byte{0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveIn, sa: 0x01, usage: []byte{0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveIn, sa: 0x02, usage: []byte{0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveIn, sa: 0x03, usage: []byte{0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x00, usage: []byte{0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x01, usage: []byte{0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x02, usage: []byte{0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x03, usage: []byte{0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x04, usage: []byte{0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x05, usage: []byte{0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x06, usage: []byte{0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpPersistentReserveOut, sa: 0x07, usage: []byte{0x5f, 0x07, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}, flags: fSA | fKernelPR},
	{op: OpExtendedCopy, sa: SAExtendedCopyLID1, usage: []byte{0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, length: field{10, 4}, flags: fSA | fMedium, kind: KindWrite, exec: (*Disk).extendedCopy},
	{op: OpReceiveCopyResults, sa: SACopyStatusLID1, usage: []byte{0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, length: field{10, 4}, flags: fSA, exec: (*Disk).receiveCopyResults},
	{op: OpReceiveCopyResults, sa: SAOperatingParameters, usage: []byte{0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, length: field{10, 4}, flags: fSA, exec: (*Disk).receiveCopyResults},
	{op: OpRead16, usage: []byte{0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium | fFUA | fDPO, kind: KindRead, exec: (*Disk).read},
	{op: OpCompareAndWrite, usage: []byte{0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x3f, 0}, lba: lba16, blocks: field{13, 1}, flags: fMedium | fFUA | fDPO, kind: KindCompareAndWrite, exec: (*Disk).compareAndWrite},
	{op: OpWrite16, usage: []byte{0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium | fFUA | fDPO, kind: KindWrite, exec: (*Disk).write},
	{op: OpWriteAndVerify16, usage: []byte{0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium | fDPO, kind: KindWrite, exec: (*Disk).writeAndVerify},
	{op: OpVerify16, usage: []byte{0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium | fDPO, kind: KindRead, exec: (*Disk).verify},
	{op: OpPreFetch16, usage: []byte{0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium, exec: (*Disk).preFetch},
	{op: OpSynchronizeCache16, usage: []byte{0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium, kind: KindSync, exec: (*Disk).synchronizeCache},
	// WRITE SAME(16): UNMAP, NDOB; no ANCHOR (ANC_SUP=0), WRPROTECT 0.
	{op: OpWriteSame16, usage: []byte{0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba16, blocks: len16, flags: fMedium, kind: KindWriteSame, exec: (*Disk).writeSame},
	// READ CAPACITY(16): the obsolete LBA and PMI fields are accepted as
	// in SBC-3 (LBA must be 0 unless PMI is set).
	{op: OpServiceActionIn16, sa: SAReadCapacity16, usage: []byte{0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, lba: lba16, length: field{10, 4}, flags: fSA | fMedium, exec: (*Disk).readCapacity16},
	{op: OpServiceActionIn16, sa: SAGetLBAStatus, usage: []byte{0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, lba: lba16, length: field{10, 4}, flags: fSA | fMedium | fThin, exec: (*Disk).getLBAStatus},
	{op: OpReportLUNs, usage: []byte{0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, flags: fKernel | fNoUA},
	// REPORT TARGET PORT GROUPS: PARAMETER DATA FORMAT 000b or 001b.
	{op: OpMaintenanceIn, sa: SAReportTargetPortGroups, usage: []byte{0xa3, 0x2a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, length: field{6, 4}, flags: fSA | fALUA | fNoUA, exec: (*Disk).reportTargetPortGroups},
	// REPORT SUPPORTED OPERATION CODES: RCTD, REPORTING OPTIONS.
	{op: OpMaintenanceIn, sa: SAReportSupportedOpcodes, usage: []byte{0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, length: field{6, 4}, flags: fSA, exec: (*Disk).reportSupportedOpcodes},
	{op: OpRead12, usage: []byte{0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba10, blocks: len12, flags: fMedium | fFUA | fDPO, kind: KindRead, exec: (*Disk).read},
	{op: OpWrite12, usage: []byte{0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba10, blocks: len12, flags: fMedium | fFUA | fDPO, kind: KindWrite, exec: (*Disk).write},
	{op: OpWriteAndVerify12, usage: []byte{0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba10, blocks: len12, flags: fMedium | fDPO, kind: KindWrite, exec: (*Disk).writeAndVerify},
	{op: OpVerify12, usage: []byte{0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}, lba: lba10, blocks: len12, flags: fMedium | fDPO, kind: KindRead, exec: (*Disk).verify},
}

// byOpcode indexes commands: the entries of one opcode, in service action
// order. ordered is commands, for the handlers that commands refers to
// (a direct reference would be an initialization cycle).
var (
	byOpcode [256][]*command
	ordered  []*command
)

func init() {
	ordered = commands
	for _, c := range commands {
		if len(c.usage) != cdbLen(c.op) || c.usage[0] != byte(c.op) {
			panic("scsi: bad command table entry for " + c.op.String())
		}
		byOpcode[c.op] = append(byOpcode[c.op], c)
	}
}

// lookup finds the command of op and, for opcodes with service actions,
// sa.
func lookup(op Opcode, sa uint8) (*command, bool) {
	for _, c := range byOpcode[op] {
		if c.flags&fSA == 0 || c.sa == sa {
			return c, true
		}
	}
	return nil, false
}

// ParseCDB decodes cdb and checks it against the command's CDB layout:
// an unknown opcode is ErrInvalidOpcode; an unknown service action, a CDB
// shorter than its group's length, or any bit set in a reserved,
// obsolete or unsupported field (RDPROTECT, WRPROTECT and VRPROTECT
// without protection information, NACA, LINK) is
// ErrInvalidFieldInCDB with a field pointer. Bytes after the command's
// length are ignored. ParseCDB does not depend on a disk's state: range
// and limit checks are Execute's.
func ParseCDB(cdb []byte) (CDB, error) {
	var c CDB
	if len(cdb) == 0 {
		return c, ErrInvalidOpcode
	}
	op := Opcode(cdb[0])
	n := cdbLen(op)
	cands := byOpcode[op]
	if n == 0 || len(cands) == 0 {
		return c, ErrInvalidOpcode
	}
	if len(cdb) < n {
		return c, cdbField(len(cdb), -1)
	}
	var sa uint8
	if cands[0].flags&fSA != 0 {
		sa = cdb[1] & 0x1f
	}
	cmd, ok := lookup(op, sa)
	if !ok {
		return c, cdbField(1, 4)
	}
	for i := 1; i < n; i++ {
		allowed := cmd.usage[i]
		if i == 1 && cmd.flags&fSA != 0 {
			allowed = cmd.usage[1]&^0x1f | 0x1f
		}
		if bad := cdb[i] &^ allowed; bad != 0 {
			return c, cdbField(i, bits.Len8(bad)-1)
		}
	}
	c.Op, c.cmd = op, cmd
	copy(c.raw[:], cdb[:n])
	if cmd.flags&fSA != 0 {
		c.ServiceAction = sa
	}
	c.LBA = cmd.lba.get(cdb)
	c.Blocks = uint32(cmd.blocks.get(cdb))
	c.Length = uint32(cmd.length.get(cdb))
	if cmd.flags&fRead6 != 0 {
		// SBC-4 READ(6): a 21-bit LBA; TRANSFER LENGTH 0 is 256.
		c.LBA &= 0x1fffff
		if c.Blocks == 0 {
			c.Blocks = 256
		}
	}
	return c, nil
}

// be16, be32, be64 are shorthands for the big-endian field accessors.
func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }
func put32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
func put64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }
