// SPDX-License-Identifier: Apache-2.0

package scsi

import "fmt"

// Opcode is the OPERATION CODE of a CDB (SPC-5, annex E).
type Opcode uint8

// Operation codes of SPC-5 and SBC-4 that this package knows by name.
const (
	OpTestUnitReady            Opcode = 0x00
	OpRequestSense             Opcode = 0x03
	OpFormatUnit               Opcode = 0x04
	OpRead6                    Opcode = 0x08
	OpWrite6                   Opcode = 0x0A
	OpInquiry                  Opcode = 0x12
	OpModeSelect6              Opcode = 0x15
	OpReserve6                 Opcode = 0x16
	OpRelease6                 Opcode = 0x17
	OpModeSense6               Opcode = 0x1A
	OpStartStopUnit            Opcode = 0x1B
	OpReceiveDiagnosticResults Opcode = 0x1C
	OpSendDiagnostic           Opcode = 0x1D
	OpPreventAllowMediumRemove Opcode = 0x1E
	OpReadCapacity10           Opcode = 0x25
	OpRead10                   Opcode = 0x28
	OpWrite10                  Opcode = 0x2A
	OpWriteAndVerify10         Opcode = 0x2E
	OpVerify10                 Opcode = 0x2F
	OpPreFetch10               Opcode = 0x34
	OpSynchronizeCache10       Opcode = 0x35
	OpWriteBuffer              Opcode = 0x3B
	OpReadBuffer               Opcode = 0x3C
	OpWriteSame10              Opcode = 0x41
	OpUnmap                    Opcode = 0x42
	OpLogSelect                Opcode = 0x4C
	OpLogSense                 Opcode = 0x4D
	OpModeSelect10             Opcode = 0x55
	OpReserve10                Opcode = 0x56
	OpRelease10                Opcode = 0x57
	OpModeSense10              Opcode = 0x5A
	OpPersistentReserveIn      Opcode = 0x5E
	OpPersistentReserveOut     Opcode = 0x5F
	OpVariableLength           Opcode = 0x7F
	OpExtendedCopy             Opcode = 0x83 // THIRD-PARTY COPY OUT
	OpReceiveCopyResults       Opcode = 0x84 // THIRD-PARTY COPY IN
	OpRead16                   Opcode = 0x88
	OpCompareAndWrite          Opcode = 0x89
	OpWrite16                  Opcode = 0x8A
	OpWriteAndVerify16         Opcode = 0x8E
	OpVerify16                 Opcode = 0x8F
	OpPreFetch16               Opcode = 0x90
	OpSynchronizeCache16       Opcode = 0x91
	OpWriteSame16              Opcode = 0x93
	OpServiceActionIn16        Opcode = 0x9E
	OpServiceActionOut16       Opcode = 0x9F
	OpReportLUNs               Opcode = 0xA0
	OpMaintenanceIn            Opcode = 0xA3
	OpMaintenanceOut           Opcode = 0xA4
	OpRead12                   Opcode = 0xA8
	OpWrite12                  Opcode = 0xAA
	OpWriteAndVerify12         Opcode = 0xAE
	OpVerify12                 Opcode = 0xAF
)

// Service actions of the opcodes above that carry one in byte 1.
const (
	SAExtendedCopyLID1       = 0x00 // OpExtendedCopy
	SACopyStatusLID1         = 0x00 // OpReceiveCopyResults
	SAOperatingParameters    = 0x03 // OpReceiveCopyResults
	SAFailedSegmentDetails   = 0x04 // OpReceiveCopyResults
	SAReadCapacity16         = 0x10 // OpServiceActionIn16
	SAGetLBAStatus           = 0x12 // OpServiceActionIn16
	SAReportTargetPortGroups = 0x0A // OpMaintenanceIn
	SAReportSupportedOpcodes = 0x0C // OpMaintenanceIn
	SAReportSupportedTMFs    = 0x0D // OpMaintenanceIn
	SAReportTimestamp        = 0x0F // OpMaintenanceIn
	SASetTargetPortGroups    = 0x0A // OpMaintenanceOut
)

var opNames = map[Opcode]string{
	OpTestUnitReady:            "TEST UNIT READY",
	OpRequestSense:             "REQUEST SENSE",
	OpFormatUnit:               "FORMAT UNIT",
	OpRead6:                    "READ(6)",
	OpWrite6:                   "WRITE(6)",
	OpInquiry:                  "INQUIRY",
	OpModeSelect6:              "MODE SELECT(6)",
	OpReserve6:                 "RESERVE(6)",
	OpRelease6:                 "RELEASE(6)",
	OpModeSense6:               "MODE SENSE(6)",
	OpStartStopUnit:            "START STOP UNIT",
	OpReceiveDiagnosticResults: "RECEIVE DIAGNOSTIC RESULTS",
	OpSendDiagnostic:           "SEND DIAGNOSTIC",
	OpPreventAllowMediumRemove: "PREVENT ALLOW MEDIUM REMOVAL",
	OpReadCapacity10:           "READ CAPACITY(10)",
	OpRead10:                   "READ(10)",
	OpWrite10:                  "WRITE(10)",
	OpWriteAndVerify10:         "WRITE AND VERIFY(10)",
	OpVerify10:                 "VERIFY(10)",
	OpPreFetch10:               "PRE-FETCH(10)",
	OpSynchronizeCache10:       "SYNCHRONIZE CACHE(10)",
	OpWriteBuffer:              "WRITE BUFFER",
	OpReadBuffer:               "READ BUFFER",
	OpWriteSame10:              "WRITE SAME(10)",
	OpUnmap:                    "UNMAP",
	OpLogSelect:                "LOG SELECT",
	OpLogSense:                 "LOG SENSE",
	OpModeSelect10:             "MODE SELECT(10)",
	OpReserve10:                "RESERVE(10)",
	OpRelease10:                "RELEASE(10)",
	OpModeSense10:              "MODE SENSE(10)",
	OpPersistentReserveIn:      "PERSISTENT RESERVE IN",
	OpPersistentReserveOut:     "PERSISTENT RESERVE OUT",
	OpVariableLength:           "VARIABLE LENGTH",
	OpExtendedCopy:             "EXTENDED COPY",
	OpReceiveCopyResults:       "RECEIVE COPY RESULTS",
	OpRead16:                   "READ(16)",
	OpCompareAndWrite:          "COMPARE AND WRITE",
	OpWrite16:                  "WRITE(16)",
	OpWriteAndVerify16:         "WRITE AND VERIFY(16)",
	OpVerify16:                 "VERIFY(16)",
	OpPreFetch16:               "PRE-FETCH(16)",
	OpSynchronizeCache16:       "SYNCHRONIZE CACHE(16)",
	OpWriteSame16:              "WRITE SAME(16)",
	OpServiceActionIn16:        "SERVICE ACTION IN(16)",
	OpServiceActionOut16:       "SERVICE ACTION OUT(16)",
	OpReportLUNs:               "REPORT LUNS",
	OpMaintenanceIn:            "MAINTENANCE IN",
	OpMaintenanceOut:           "MAINTENANCE OUT",
	OpRead12:                   "READ(12)",
	OpWrite12:                  "WRITE(12)",
	OpWriteAndVerify12:         "WRITE AND VERIFY(12)",
	OpVerify12:                 "VERIFY(12)",
}

func (o Opcode) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Opcode(%#02x)", uint8(o))
}

// cdbLen is the CDB length implied by the GROUP CODE of op (SPC-5
// 4.2.5.1), or 0 for the reserved, variable-length and vendor groups.
func cdbLen(op Opcode) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 0
}

// saNames names the commands that are a service action of an opcode.
var saNames = map[uint16]string{
	uint16(OpExtendedCopy)<<8 | SAExtendedCopyLID1:           "EXTENDED COPY(LID1)",
	uint16(OpReceiveCopyResults)<<8 | SACopyStatusLID1:       "RECEIVE COPY STATUS(LID1)",
	uint16(OpReceiveCopyResults)<<8 | SAOperatingParameters:  "RECEIVE COPY OPERATING PARAMETERS",
	uint16(OpReceiveCopyResults)<<8 | SAFailedSegmentDetails: "RECEIVE COPY FAILURE DETAILS(LID1)",
	uint16(OpServiceActionIn16)<<8 | SAReadCapacity16:        "READ CAPACITY(16)",
	uint16(OpServiceActionIn16)<<8 | SAGetLBAStatus:          "GET LBA STATUS",
	uint16(OpMaintenanceIn)<<8 | SAReportTargetPortGroups:    "REPORT TARGET PORT GROUPS",
	uint16(OpMaintenanceIn)<<8 | SAReportSupportedOpcodes:    "REPORT SUPPORTED OPERATION CODES",
	uint16(OpMaintenanceIn)<<8 | SAReportSupportedTMFs:       "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
	uint16(OpMaintenanceIn)<<8 | SAReportTimestamp:           "REPORT TIMESTAMP",
	uint16(OpMaintenanceOut)<<8 | SASetTargetPortGroups:      "SET TARGET PORT GROUPS",
}

// CommandName names the command of cdb for logs: the service action's
// name for opcodes that have one ("READ CAPACITY(16)" rather than
// "SERVICE ACTION IN(16)"), else the opcode's.
func CommandName(cdb []byte) string {
	if len(cdb) == 0 {
		return "none"
	}
	op := Opcode(cdb[0])
	if len(cdb) > 1 {
		if s, ok := saNames[uint16(op)<<8|uint16(cdb[1]&0x1f)]; ok {
			return s
		}
	}
	return op.String()
}
