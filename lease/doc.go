// SPDX-License-Identifier: Apache-2.0

// Package lease decides which of several gateways owns a LUN whose
// backing file is on a shared file system, and tells the SCSI disk of each
// gateway what to report (it implements scsi.ALUA).
//
// # Model
//
// docs/scale-out.md is the design; this is its summary. Beside the backing
// file F lies a sidecar file, F.lease. A gateway owns the LUN while it
// holds an open file description lock (F_OFD_SETLK) on byte 0 of the
// sidecar AND the owner record at offset 0 of the sidecar carries its
// epoch and nonce. Acquiring the lock, a gateway writes epoch+1 there
// (fdatasync), waits one validity period reporting transitioning, and then
// serves as active/optimized. The epoch is the fencing token: an owner
// that reads another epoch than its own has been fenced and stops.
//
// The owner re-reads the sidecar every poll interval; each read that
// shows its epoch extends its validity to the time the read started plus
// Config.Validity. Lease.CheckWrite fails once that time has passed, so a
// gateway that cannot reach the file system, or was paused, stops
// acknowledging writes before another gateway can have finished its
// takeover delay. Time is CLOCK_BOOTTIME (Config.Clock), which counts a
// suspend; a step of the wall clock against it (a paused VM whose clock
// was set right) ends the validity at once.
//
// A gateway whose file system client lost the backing file or the
// sidecar (FileGone: ENOTCONN from a dead FUSE client, ESTALE, ...)
// cannot write or renew again through that mount: Lost fences it at once
// and for good (unavailable, 02/04/0C), and Run gives the lock up so that
// another gateway takes over; the daemon must be restarted to rejoin.
//
// Non-owners report standby. A standby gateway that refuses an
// initiator's I/O (scsi.ALUA.Refused) writes a request record at offset
// 512; the owner hands over on its next poll if it has owned the LUN for
// Config.HoldDown: it reports transitioning, drains, writes "released",
// unlocks and becomes standby, and the requester acquires the lock.
//
// # Concurrency
//
// Run is the only goroutine that touches the sidecar. State, CheckWrite,
// PortGroups, Refused and Status are safe for concurrent use and never
// block: they read atomics and a snapshot under a mutex.
package lease
