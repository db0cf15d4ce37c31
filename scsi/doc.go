// SPDX-License-Identifier: Apache-2.0

// Package scsi decodes SCSI CDBs and emulates an SBC-4/SPC-5 direct-access
// block device. It does no I/O of its own: data operations go through the
// Backend interface, which package bridge implements over a file.
//
// # Model
//
// TCMU (target_core_user) hands userspace every CDB of a LUN except the few
// that LIO answers itself: REPORT LUNS always, and PERSISTENT RESERVE
// IN/OUT (and RESERVE/RELEASE) while the device's emulate_pr attribute is
// set. The kernel neither range-checks LBAs nor rejects reserved bits for
// such a device, so a Disk is a complete, strict disk: every other command
// is validated and answered here, with the sense data the standards ask
// for.
//
// A Disk is built from a Config (block size, capacity, identity, limits,
// provisioning) and a Backend. Disk.Execute runs one command: the CDB and
// the command's data buffers (TCMU's iovecs; a data-out command's data, or
// the space a data-in command fills). Its error is nil for GOOD status, an
// *Error for CHECK CONDITION, or a wrapped Backend error that the caller
// maps to sense data (a full file system, an I/O error). Disk.Sense formats
// an *Error as fixed (70h) or, with D_SENSE set in the control mode page,
// descriptor (72h) sense data. Result.DataIn gives the length of data-in,
// truncated to the allocation length, for residual reporting.
//
// Decoding is table driven: each operation code (and service action) has
// an entry with its CDB usage data, the bit map that REPORT SUPPORTED
// OPERATION CODES returns. ParseCDB rejects any bit outside that map, so
// reserved and obsolete bits, RDPROTECT/WRPROTECT/VRPROTECT (there is no
// protection information), NACA and LINK all give INVALID FIELD IN CDB
// with a field pointer, and the report always matches what the disk
// accepts. GROUP NUMBER is accepted and ignored: SBC-4 defines it (it is
// not reserved) and, with GROUP_SUP=0 in the Extended INQUIRY Data VPD
// page, it names no group the disk keeps attributes for. Execute then checks state (unit attention, not ready,
// write protect), transfer limits and LBA ranges before the Backend sees
// an offset: the Backend is only ever asked for whole blocks inside the
// disk.
//
// Disk.TryRead is Execute for a READ that must not block, for a caller
// that runs commands on a thread which must not wait on a device (the
// ring's UIO waiter): through the same prologue, it reads with a
// Backend's NowaitReader (RWF_NOWAIT, a page-cache hit) or returns
// ErrWouldBlock having changed nothing, and the caller then runs the
// command with Execute elsewhere.
//
// # Commands
//
// SPC-5: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard data and VPD
// pages 00h, 80h, 83h, 86h, B0h, B1h, B2h), MODE SENSE(6/10) and MODE
// SELECT(6/10) (pages 01h, 08h, 0Ah, 1Ch, all pages 3Fh; current,
// changeable and default values), REPORT SUPPORTED OPERATION CODES, SEND
// DIAGNOSTIC (self-tests) and RECEIVE DIAGNOSTIC RESULTS (page 00h),
// EXTENDED COPY(LID1) and RECEIVE COPY RESULTS. With Config.ALUA, implicit
// asymmetric logical unit access: TPGS 01b, target port designators in VPD
// page 83h, REPORT TARGET PORT GROUPS, and the commands each access state
// refuses (alua.go).
//
// SBC-4: READ and WRITE (6/10/12/16), WRITE AND VERIFY (10/12/16), VERIFY
// (10/12/16), PRE-FETCH (10/16), SYNCHRONIZE CACHE (10/16), READ CAPACITY
// (10/16), WRITE SAME (10/16), UNMAP, GET LBA STATUS, COMPARE AND WRITE,
// START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL and FORMAT UNIT. UNMAP and
// GET LBA STATUS exist only with thin provisioning.
//
// # Choices
//
//   - Write cache: WCE in the caching mode page starts from
//     Config.WriteCache and MODE SELECT may change it. A write with FUA, or
//     any write while WCE=0, is followed by Backend.Sync of its range
//     before it completes. DPO is accepted and ignored.
//   - COMPARE AND WRITE is atomic against every other write: writes,
//     unmaps and WRITE SAME hold a read-write lock shared, COMPARE AND
//     WRITE holds it exclusively. Writes never wait for each other, and
//     READ and WRITE do not allocate.
//   - WRITE SAME with UNMAP and a zero block (or NDOB) deallocates
//     (LBPRZ=1); zeros without UNMAP use Zeroer.WriteZeroes when the
//     Backend has it, and any other pattern is written from a buffer of
//     repeated blocks. ANCHOR is rejected (ANC_SUP=0); a NUMBER OF LOGICAL
//     BLOCKS of 0 is rejected (WSNZ=1).
//   - Parameters cannot be saved: MODE SENSE of saved values is SAVING
//     PARAMETERS NOT SUPPORTED, MODE SELECT with SP is INVALID FIELD IN CDB.
//   - Unit attentions: no power-on reset unit attention is raised (Linux
//     would only log it). SetCapacity raises CAPACITY DATA HAS CHANGED,
//     reported once to whichever initiator sends the next command other
//     than INQUIRY, REPORT LUNS or REQUEST SENSE: TCMU does not say which
//     I_T nexus a command came from.
//   - SetOnline(false) makes commands that touch the medium fail with NOT
//     READY, MANUAL INTERVENTION REQUIRED; START STOP UNIT with START=0
//     makes them fail with NOT READY, INITIALIZING COMMAND REQUIRED.
//   - Transfer lengths: data-in buffers of another length than the CDB
//     asks for (an iSCSI expected data transfer length that differs) get
//     the data in order up to the shorter of the two, and Result.DataIn
//     says how much; whatever a data-in command does not fill is zeroed,
//     so that no stale bytes of TCMU's data area reach the initiator.
//     WRITE SAME and COMPARE AND WRITE with a data-out buffer of another
//     size than the CDB implies are INVALID FIELD IN COMMAND INFORMATION
//     UNIT (TCMU cannot report a data-out residual); WRITE and WRITE AND
//     VERIFY with too little data are INVALID FIELD IN CDB.
//   - PRE-FETCH returns GOOD without loading anything (there is no cache
//     of the disk's own); SYNCHRONIZE CACHE and START STOP UNIT with IMMED
//     complete after the work is done, which the standards allow.
package scsi
