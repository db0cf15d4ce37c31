// SPDX-License-Identifier: Apache-2.0

package scsi

import "errors"

// ErrWouldBlock is TryRead's answer for a command it cannot finish without
// blocking: the caller runs it with Execute instead, where it may block.
// It is never a command's outcome, so it maps to no sense data.
var ErrWouldBlock = errors.New("scsi: would block")

// NowaitReader is implemented by a Backend that can tell a read it can
// serve at once (from memory: the page cache) from one that would wait
// (preadv2 with RWF_NOWAIT). TryRead needs it.
type NowaitReader interface {
	// ReadAtNowait is ReadAt that never waits for a device: it fills
	// bufs from off completely, or fails. An error wrapping
	// ErrWouldBlock means it could not do so without waiting; bufs may
	// then hold part of the data. Any other error is an I/O failure, as
	// from ReadAt.
	ReadAtNowait(bufs [][]byte, off int64) (n int, err error)
}

// TryRead runs a READ(6/10/12/16) as Execute would, if it can finish
// without blocking: no unit attention is pending, the Backend is a
// NowaitReader whose ReadAtNowait serves the whole transfer, and the
// data-in buffers are exactly the transfer (the others take readMismatch,
// which may allocate and read twice). Otherwise it returns ErrWouldBlock
// having changed nothing in the disk (the buffers may hold part of the
// data: Execute fills them again), and the caller runs the command with
// Execute.
//
// The command passes the same checks as in Execute (decoding, support,
// ALUA state, medium state, transfer limits, range), none of which
// blocks: a failed check is the command's outcome, as from Execute.
func (d *Disk) TryRead(cdb []byte, data [][]byte) (Result, error) {
	// A pending unit attention: the command reports it, which Execute
	// does (taking it is a side effect TryRead must not have).
	if d.nowait == nil || len(cdb) == 0 || !isRead(Opcode(cdb[0])) || d.ua.Load() != 0 {
		return Result{}, ErrWouldBlock
	}
	c, kind, err := d.admit(cdb)
	if err != nil {
		return Result{Kind: kind}, err
	}
	return d.readFrom(&c, data, d.nowait)
}

// isRead reports whether op is READ(6/10/12/16).
func isRead(op Opcode) bool {
	switch op {
	case OpRead6, OpRead10, OpRead12, OpRead16:
		return true
	}
	return false
}
