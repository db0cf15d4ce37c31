// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// This file is the userspace half of <linux/target_core_user.h>: one
// constant per field offset, read and written with binary.NativeEndian over
// the mmapped []byte. Go has no packed structs or unions, and tcmu_cmd_entry
// is both (hdr + req/rsp union + flexible iov[]), so no struct is ever cast
// onto shared memory. TestOffsetsMatchKernelHeader checks every constant
// against the C header with offsetof.

// ne is the byte order of the shared ring: the header declares host-order
// __u16/__u32/__u64 fields, not __le32.
var ne = binary.NativeEndian

// struct tcmu_mailbox (at offset 0 of the mapping).
const (
	mbVersion  = 0   // tcmu_mailbox.version __u16; written by the kernel
	mbFlags    = 2   // tcmu_mailbox.flags __u16; written by the kernel
	mbCmdrOff  = 4   // tcmu_mailbox.cmdr_off __u32; offset of the command ring
	mbCmdrSize = 8   // tcmu_mailbox.cmdr_size __u32; size of the command ring
	mbCmdHead  = 12  // tcmu_mailbox.cmd_head __u32; written only by the kernel
	mbCmdTail  = 64  // tcmu_mailbox.cmd_tail __u32; written only by us (own cache line)
	mbSize     = 128 // sizeof(struct tcmu_mailbox): cmd_tail is __aligned__(ALIGN_SIZE=64)
)

// mailboxVersion is TCMU_MAILBOX_VERSION, the only layout this file speaks.
const mailboxVersion = 2 // TCMU_MAILBOX_VERSION

// Mailbox flags (tcmu_mailbox.flags): capabilities the kernel advertises.
const (
	mbFlagCapOOOC    = 1 << 0 // TCMU_MAILBOX_FLAG_CAP_OOOC: out-of-order completions
	mbFlagCapReadLen = 1 << 1 // TCMU_MAILBOX_FLAG_CAP_READ_LEN: rsp.read_len honoured
	mbFlagCapTMR     = 1 << 2 // TCMU_MAILBOX_FLAG_CAP_TMR: TMR notifications
	mbFlagCapKeepBuf = 1 << 3 // TCMU_MAILBOX_FLAG_CAP_KEEP_BUF: keep buffer after completion
)

// struct tcmu_cmd_entry_hdr (first 8 bytes of every ring entry).
const (
	hdrLenOp  = 0 // tcmu_cmd_entry_hdr.len_op __u32: length | opcode in the low 3 bits
	hdrCmdID  = 4 // tcmu_cmd_entry_hdr.cmd_id __u16
	hdrKflags = 6 // tcmu_cmd_entry_hdr.kflags __u8; written by the kernel
	hdrUflags = 7 // tcmu_cmd_entry_hdr.uflags __u8; written by us
	hdrSize   = 8 // sizeof(struct tcmu_cmd_entry_hdr)
)

// opMask is TCMU_OP_MASK: entry lengths are 8-byte aligned, so the low three
// bits of len_op carry the opcode.
const opMask = 0x7 // TCMU_OP_MASK

// opAlign is TCMU_OP_ALIGN_SIZE (sizeof(__u64)): every entry length is a
// multiple of it.
const opAlign = 8 // TCMU_OP_ALIGN_SIZE

// Entry opcodes (enum tcmu_opcode).
const (
	opPad = 0 // TCMU_OP_PAD: skip hdr length bytes
	opCmd = 1 // TCMU_OP_CMD: a SCSI command
	opTMR = 2 // TCMU_OP_TMR: a task management notification
)

// Entry uflags (tcmu_cmd_entry_hdr.uflags), set by userspace.
const (
	uflagUnknownOp = 0x1 // TCMU_UFLAG_UNKNOWN_OP: we did not understand the entry
	uflagReadLen   = 0x2 // TCMU_UFLAG_READ_LEN: rsp.read_len is valid
	uflagKeepBuf   = 0x4 // TCMU_UFLAG_KEEP_BUF: keep the data buffer after completion
)

// struct tcmu_cmd_entry: the request half of the union.
const (
	reqIovCnt     = 8   // tcmu_cmd_entry.req.iov_cnt __u32: data iovecs
	reqIovBidiCnt = 12  // tcmu_cmd_entry.req.iov_bidi_cnt __u32: bidi data-in iovecs, after the data ones
	reqIovDifCnt  = 16  // tcmu_cmd_entry.req.iov_dif_cnt __u32: protection iovecs, after the bidi ones
	reqCdbOff     = 24  // tcmu_cmd_entry.req.cdb_off __u64: offset from the start of the mapping
	reqIov        = 48  // tcmu_cmd_entry.req.iov[]: struct iovec is 16 bytes on LP64
	iovBase       = 0   // struct iovec.iov_base: an offset from the start of the mapping
	iovLen        = 8   // struct iovec.iov_len
	iovSize       = 16  // sizeof(struct iovec)
	entSize       = 112 // sizeof(struct tcmu_cmd_entry): the kernel never makes a CMD entry smaller
)

// struct tcmu_cmd_entry: the response half of the union, written by us.
const (
	rspStatus   = 8  // tcmu_cmd_entry.rsp.scsi_status __u8
	rspReadLen  = 12 // tcmu_cmd_entry.rsp.read_len __u32
	rspSense    = 16 // tcmu_cmd_entry.rsp.sense_buffer[TCMU_SENSE_BUFFERSIZE]
	senseBufLen = 96 // TCMU_SENSE_BUFFERSIZE
)

// struct tcmu_tmr_entry.
const (
	tmrType    = 8  // tcmu_tmr_entry.tmr_type __u8
	tmrCmdCnt  = 12 // tcmu_tmr_entry.cmd_cnt __u32
	tmrCmdIDs  = 32 // tcmu_tmr_entry.cmd_ids[] __u16
	tmrEntSize = 32 // sizeof(struct tcmu_tmr_entry)
)

// entryOp extracts the opcode from a len_op word (tcmu_hdr_get_op).
func entryOp(lenOp uint32) uint32 { return lenOp & opMask }

// entryLen extracts the length from a len_op word (tcmu_hdr_get_len).
func entryLen(lenOp uint32) uint32 { return lenOp &^ opMask }

// mailbox is the first mbSize bytes of the mapping. Its accessors index a
// slice whose length NewRing checked; cmd_head and cmd_tail are not here:
// they are only touched atomically (ring_unsafe.go).
type mailbox []byte

func (m mailbox) version() uint16  { return ne.Uint16(m[mbVersion:]) }
func (m mailbox) flags() uint16    { return ne.Uint16(m[mbFlags:]) }
func (m mailbox) cmdrOff() uint32  { return ne.Uint32(m[mbCmdrOff:]) }
func (m mailbox) cmdrSize() uint32 { return ne.Uint32(m[mbCmdrSize:]) }

// entry is one command ring entry, sliced to its header-declared length
// (at least hdrSize) before any accessor is used. Go's bounds checks make a
// wrong slice a panic, never an access outside the mapping.
type entry []byte

func (e entry) lenOp() uint32      { return ne.Uint32(e[hdrLenOp:]) }
func (e entry) cmdID() uint16      { return ne.Uint16(e[hdrCmdID:]) }
func (e entry) uflags() uint8      { return e[hdrUflags] }
func (e entry) setUflags(f uint8)  { e[hdrUflags] = f }
func (e entry) setCmdID(id uint16) { ne.PutUint16(e[hdrCmdID:], id) }
func (e entry) iovCnt() uint32     { return ne.Uint32(e[reqIovCnt:]) }
func (e entry) iovBidiCnt() uint32 { return ne.Uint32(e[reqIovBidiCnt:]) }
func (e entry) iovDifCnt() uint32  { return ne.Uint32(e[reqIovDifCnt:]) }
func (e entry) cdbOff() uint64     { return ne.Uint64(e[reqCdbOff:]) }
func (e entry) iov(i int) (base, n uint64) {
	o := reqIov + i*iovSize
	return ne.Uint64(e[o+iovBase:]), ne.Uint64(e[o+iovLen:])
}
func (e entry) setStatus(s uint8)     { e[rspStatus] = s }
func (e entry) setReadLen(n uint32)   { ne.PutUint32(e[rspReadLen:], n) }
func (e entry) sense() []byte         { return e[rspSense : rspSense+senseBufLen] }
func (e entry) tmrType() uint8        { return e[tmrType] }
func (e entry) tmrCmdCnt() uint32     { return ne.Uint32(e[tmrCmdCnt:]) }
func (e entry) tmrCmdID(i int) uint16 { return ne.Uint16(e[tmrCmdIDs+2*i:]) }

// Caps is the set of capabilities the kernel advertises in the mailbox
// flags (TCMU_MAILBOX_FLAG_CAP_*).
type Caps uint16

// Capabilities, from <linux/target_core_user.h>.
const (
	CapOOOC    Caps = mbFlagCapOOOC    // out-of-order completions
	CapReadLen Caps = mbFlagCapReadLen // short reads via rsp.read_len
	CapTMR     Caps = mbFlagCapTMR     // TMR notifications in the ring
	CapKeepBuf Caps = mbFlagCapKeepBuf // data buffers kept after completion
)

// Has reports whether every capability in want is set.
func (c Caps) Has(want Caps) bool { return c&want == want }

// String lists the capabilities, e.g. "OOOC|READ_LEN|0x10".
func (c Caps) String() string {
	if c == 0 {
		return "0"
	}
	names := []struct {
		c    Caps
		name string
	}{{CapOOOC, "OOOC"}, {CapReadLen, "READ_LEN"}, {CapTMR, "TMR"}, {CapKeepBuf, "KEEP_BUF"}}
	var parts []string
	for _, n := range names {
		if c&n.c != 0 {
			parts = append(parts, n.name)
			c &^= n.c
		}
	}
	if c != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(c), 16))
	}
	return strings.Join(parts, "|")
}

// TMRType is tcmu_tmr_entry.tmr_type: which task management function the
// initiator asked for (SAM-5 7.x); the kernel has already acted on it and
// only notifies us.
type TMRType uint8

// TMR types (TCMU_TMR_*).
const (
	TMRUnknown         TMRType = 0   // TCMU_TMR_UNKNOWN
	TMRAbortTask       TMRType = 1   // TCMU_TMR_ABORT_TASK
	TMRAbortTaskSet    TMRType = 2   // TCMU_TMR_ABORT_TASK_SET
	TMRClearACA        TMRType = 3   // TCMU_TMR_CLEAR_ACA
	TMRClearTaskSet    TMRType = 4   // TCMU_TMR_CLEAR_TASK_SET
	TMRLUNReset        TMRType = 5   // TCMU_TMR_LUN_RESET
	TMRTargetWarmReset TMRType = 6   // TCMU_TMR_TARGET_WARM_RESET
	TMRTargetColdReset TMRType = 7   // TCMU_TMR_TARGET_COLD_RESET
	TMRLUNResetPRO     TMRType = 128 // TCMU_TMR_LUN_RESET_PRO: pseudo reset due to a PR OUT
)

// String returns the C name without its TCMU_TMR_ prefix.
func (t TMRType) String() string {
	switch t {
	case TMRUnknown:
		return "UNKNOWN"
	case TMRAbortTask:
		return "ABORT_TASK"
	case TMRAbortTaskSet:
		return "ABORT_TASK_SET"
	case TMRClearACA:
		return "CLEAR_ACA"
	case TMRClearTaskSet:
		return "CLEAR_TASK_SET"
	case TMRLUNReset:
		return "LUN_RESET"
	case TMRTargetWarmReset:
		return "TARGET_WARM_RESET"
	case TMRTargetColdReset:
		return "TARGET_COLD_RESET"
	case TMRLUNResetPRO:
		return "LUN_RESET_PRO"
	}
	return "TMRType(" + strconv.Itoa(int(t)) + ")"
}

// variableLengthCDB is the SPC operation code of variable-length CDBs
// (VARIABLE_LENGTH_CMD in <scsi/scsi_proto.h>).
const variableLengthCDB = 0x7f

// maxCDBLen is the longest CDB the kernel can place in an entry: a
// variable-length CDB is 8 bytes plus ADDITIONAL CDB LENGTH (byte 7).
const maxCDBLen = 8 + 255

// cdbGroupLen is the CDB length by operation code group (SPC-4 4.2.5.1),
// the same table as the kernel's scsi_command_size_tbl, which decides how
// many CDB bytes queue_cmd_ring copies into the ring.
var cdbGroupLen = [8]uint8{6, 10, 10, 12, 16, 12, 10, 10}
