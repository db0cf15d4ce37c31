// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"encoding/binary"
	"fmt"
	"math"
)

// SenseKey is the SENSE KEY field of sense data (SPC-5, table 52).
type SenseKey uint8

// Sense keys (SPC-5).
const (
	KeyNoSense        SenseKey = 0x0
	KeyRecoveredError SenseKey = 0x1
	KeyNotReady       SenseKey = 0x2
	KeyMediumError    SenseKey = 0x3
	KeyHardwareError  SenseKey = 0x4
	KeyIllegalRequest SenseKey = 0x5
	KeyUnitAttention  SenseKey = 0x6
	KeyDataProtect    SenseKey = 0x7
	KeyBlankCheck     SenseKey = 0x8
	KeyVendorSpecific SenseKey = 0x9
	KeyCopyAborted    SenseKey = 0xA
	KeyAbortedCommand SenseKey = 0xB
	KeyVolumeOverflow SenseKey = 0xD
	KeyMiscompare     SenseKey = 0xE
	KeyCompleted      SenseKey = 0xF
)

var senseKeyNames = [16]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
	"HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
	"BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
	"RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

func (k SenseKey) String() string {
	if k < 16 {
		return senseKeyNames[k]
	}
	return fmt.Sprintf("SenseKey(%#x)", uint8(k))
}

// Error is a CHECK CONDITION: the sense key, additional sense code and
// qualifier, and the optional INFORMATION and sense-key specific fields of
// the sense data. Every command error of package scsi is an *Error; any
// other error returned by Disk.Execute comes from the Backend.
//
// Errors compare with errors.Is by key, ASC and ASCQ only, so a copy that
// carries a field pointer or an information field still matches its
// sentinel.
type Error struct {
	Key  SenseKey
	ASC  uint8
	ASCQ uint8

	// InfoValid says Info holds the INFORMATION field (the VALID bit of
	// fixed-format sense data, the information descriptor of descriptor
	// format): the first bad LBA, or the offset of a miscompare.
	InfoValid bool
	Info      uint64

	// FieldValid (SKSV) says the sense-key specific field is a field
	// pointer (SPC-5): the byte FieldByte of the CDB (InCDB) or
	// of the parameter list that is in error and, if BitValid, its bit
	// FieldBit (the most significant bit of a multi-bit field).
	FieldValid bool
	InCDB      bool
	BitValid   bool
	FieldBit   uint8
	FieldByte  uint16
}

// Sentinel errors. Commands return copies of them that may carry a field
// pointer or information; compare with errors.Is.
var (
	ErrNoSense                  = &Error{Key: KeyNoSense}
	ErrInvalidOpcode            = &Error{Key: KeyIllegalRequest, ASC: 0x20}
	ErrLBAOutOfRange            = &Error{Key: KeyIllegalRequest, ASC: 0x21}
	ErrInvalidFieldInCDB        = &Error{Key: KeyIllegalRequest, ASC: 0x24}
	ErrInvalidFieldInParamList  = &Error{Key: KeyIllegalRequest, ASC: 0x26}
	ErrParamListLengthError     = &Error{Key: KeyIllegalRequest, ASC: 0x1A}
	ErrInvalidFieldInCmdIU      = &Error{Key: KeyIllegalRequest, ASC: 0x0E, ASCQ: 0x03}
	ErrParamValueInvalid        = &Error{Key: KeyIllegalRequest, ASC: 0x26, ASCQ: 0x02}
	ErrTooManyTargetDescriptors = &Error{Key: KeyIllegalRequest, ASC: 0x26, ASCQ: 0x06}
	ErrUnsupportedTargetDesc    = &Error{Key: KeyIllegalRequest, ASC: 0x26, ASCQ: 0x07}
	ErrTooManySegmentDescs      = &Error{Key: KeyIllegalRequest, ASC: 0x26, ASCQ: 0x08}
	ErrUnsupportedSegmentDesc   = &Error{Key: KeyIllegalRequest, ASC: 0x26, ASCQ: 0x09}
	ErrOperationInProgress      = &Error{Key: KeyIllegalRequest, ASC: 0x00, ASCQ: 0x16}
	ErrSavingParamsUnsupported  = &Error{Key: KeyIllegalRequest, ASC: 0x39}
	ErrMiscompare               = &Error{Key: KeyMiscompare, ASC: 0x1D}
	ErrWriteProtected           = &Error{Key: KeyDataProtect, ASC: 0x27}
	ErrSpaceAllocFailed         = &Error{Key: KeyDataProtect, ASC: 0x27, ASCQ: 0x07}
	ErrNotReadyManual           = &Error{Key: KeyNotReady, ASC: 0x04, ASCQ: 0x03}
	ErrNotReadyStopped          = &Error{Key: KeyNotReady, ASC: 0x04, ASCQ: 0x02}
	ErrMediumReadError          = &Error{Key: KeyMediumError, ASC: 0x11}
	ErrMediumWriteError         = &Error{Key: KeyMediumError, ASC: 0x0C}
	ErrInternalTargetFailure    = &Error{Key: KeyHardwareError, ASC: 0x44}
	ErrCapacityChanged          = &Error{Key: KeyUnitAttention, ASC: 0x2A, ASCQ: 0x09}
	ErrModeParamsChanged        = &Error{Key: KeyUnitAttention, ASC: 0x2A, ASCQ: 0x01}
	ErrPowerOnReset             = &Error{Key: KeyUnitAttention, ASC: 0x29}
	ErrCopyTargetUnreachable    = &Error{Key: KeyCopyAborted, ASC: 0x0D, ASCQ: 0x02}
)

// ascNames describes the additional sense codes this package raises
// (SPC-5), for Error's text only.
var ascNames = map[uint16]string{
	0x0000: "no additional sense information",
	0x0016: "operation in progress",
	0x0402: "logical unit not ready, initializing command required",
	0x0403: "logical unit not ready, manual intervention required",
	0x0C00: "write error",
	0x0D02: "copy target device not reachable",
	0x0E03: "invalid field in command information unit",
	0x1100: "unrecovered read error",
	0x1A00: "parameter list length error",
	0x1D00: "miscompare during verify operation",
	0x2000: "invalid command operation code",
	0x2100: "logical block address out of range",
	0x2400: "invalid field in CDB",
	0x2600: "invalid field in parameter list",
	0x2602: "parameter value invalid",
	0x2606: "too many target descriptors",
	0x2607: "unsupported target descriptor type code",
	0x2608: "too many segment descriptors",
	0x2609: "unsupported segment descriptor type code",
	0x2700: "write protected",
	0x2707: "space allocation failed write protect",
	0x2900: "power on, reset, or bus device reset occurred",
	0x2A01: "mode parameters changed",
	0x2A09: "capacity data has changed",
	0x3900: "saving parameters not supported",
	0x4400: "internal target failure",
}

func (e *Error) Error() string {
	s := fmt.Sprintf("scsi: %v %02X/%02X/%02X", e.Key, uint8(e.Key), e.ASC, e.ASCQ)
	if n, ok := ascNames[uint16(e.ASC)<<8|uint16(e.ASCQ)]; ok {
		s += ": " + n
	}
	if e.FieldValid {
		where := "parameter list"
		if e.InCDB {
			where = "CDB"
		}
		s += fmt.Sprintf(" (%s byte %d", where, e.FieldByte)
		if e.BitValid {
			s += fmt.Sprintf(" bit %d", e.FieldBit)
		}
		s += ")"
	}
	if e.InfoValid {
		s += fmt.Sprintf(" (information %#x)", e.Info)
	}
	return s
}

// Is reports whether target is an *Error with the same sense key, ASC and
// ASCQ, ignoring the information and field pointer.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Key == e.Key && t.ASC == e.ASC && t.ASCQ == e.ASCQ
}

// WithInfo returns a copy of e whose INFORMATION field is info.
func (e *Error) WithInfo(info uint64) *Error {
	c := *e
	c.InfoValid, c.Info = true, info
	return &c
}

// WithField returns a copy of e whose field pointer names byte b, bit
// bit (bit < 0: no bit pointer) of the CDB (inCDB) or parameter list.
func (e *Error) WithField(inCDB bool, b, bit int) *Error {
	c := *e
	c.FieldValid, c.InCDB, c.FieldByte = true, inCDB, uint16(b)
	if bit >= 0 {
		c.BitValid, c.FieldBit = true, uint8(bit&7)
	}
	return &c
}

// cdbField is ErrInvalidFieldInCDB pointing at byte b, bit bit.
func cdbField(b, bit int) *Error { return ErrInvalidFieldInCDB.WithField(true, b, bit) }

// paramField is ErrInvalidFieldInParamList pointing at byte b, bit bit.
func paramField(b, bit int) *Error { return ErrInvalidFieldInParamList.WithField(false, b, bit) }

// sks is the 3-byte SENSE KEY SPECIFIC field with SKSV set, or false.
func (e *Error) sks() ([3]byte, bool) {
	var s [3]byte
	if !e.FieldValid {
		return s, false
	}
	// SPC-5: SKSV, C/D, BPV, BIT POINTER, FIELD POINTER.
	s[0] = 0x80
	if e.InCDB {
		s[0] |= 0x40
	}
	if e.BitValid {
		s[0] |= 0x08 | e.FieldBit&7
	}
	binary.BigEndian.PutUint16(s[1:], e.FieldByte)
	return s, true
}

// FixedLen is the length of fixed-format sense data as this package
// writes it.
const FixedLen = 18

// Fixed appends e as fixed-format sense data (response code 70h, SPC-5
// 4.4.3) to b. An INFORMATION value above 32 bits does not fit the field
// and is left out (VALID=0).
func (e *Error) Fixed(b []byte) []byte {
	var s [FixedLen]byte
	s[0] = 0x70
	if e.InfoValid && e.Info <= math.MaxUint32 {
		s[0] |= 0x80 // VALID
		binary.BigEndian.PutUint32(s[3:], uint32(e.Info))
	}
	s[2] = byte(e.Key) & 0x0f
	s[7] = FixedLen - 8 // ADDITIONAL SENSE LENGTH
	s[12], s[13] = e.ASC, e.ASCQ
	if k, ok := e.sks(); ok {
		copy(s[15:], k[:])
	}
	return append(b, s[:]...)
}

// Descriptor appends e as descriptor-format sense data (response code 72h,
// SPC-5) to b, with an information descriptor (type 00h) when
// InfoValid and a sense-key specific descriptor (type 02h) when FieldValid.
func (e *Error) Descriptor(b []byte) []byte {
	var s [8 + 12 + 8]byte
	s[0] = 0x72
	s[1] = byte(e.Key) & 0x0f
	s[2], s[3] = e.ASC, e.ASCQ
	n := 8
	if e.InfoValid {
		// SPC-5: type 00h, length 0Ah, VALID, 8-byte INFORMATION.
		s[n], s[n+1], s[n+2] = 0x00, 0x0a, 0x80
		binary.BigEndian.PutUint64(s[n+4:], e.Info)
		n += 12
	}
	if k, ok := e.sks(); ok {
		// SPC-5: type 02h, length 06h, reserved, 3-byte SKS.
		s[n], s[n+1] = 0x02, 0x06
		copy(s[n+4:], k[:])
		n += 8
	}
	s[7] = byte(n - 8) // ADDITIONAL SENSE LENGTH
	return append(b, s[:n]...)
}
