// SPDX-License-Identifier: Apache-2.0

package tcmu

import "sync/atomic"

// Cmd is one SCSI command taken from the ring. The ring goroutine fills it
// from a ring entry (copying everything it needs: no pointer into the
// command ring survives), hands it to Handler.Handle, and recycles it once
// the response from Ring.Complete has been written back. Cmds are reused:
// nothing in a Cmd may be retained after Complete.
type Cmd struct {
	// ID is the kernel's command id (tcmu_cmd_entry_hdr.cmd_id), unique
	// among the commands in flight; TMR entries name commands by it.
	ID uint16
	// CDB is a copy of the command descriptor block, as long as the kernel
	// copied it (scsi_command_size: 6, 10, 12, 16 bytes or, for
	// variable-length CDBs, 8 + ADDITIONAL CDB LENGTH).
	CDB []byte
	// Data are the data buffers (req.iov_cnt iovecs) as slices of the
	// mapped data area: data-out bytes to read for a write, room for the
	// data-in bytes of a read. They are meant for preadv/pwritev straight
	// into the mapping.
	Data [][]byte
	// BidiData are the data-in buffers of a bidirectional command
	// (req.iov_bidi_cnt iovecs after Data); nil for other commands.
	BidiData [][]byte
	// DIF are protection-information buffers (req.iov_dif_cnt iovecs after
	// BidiData). The kernel does not fill them today; nil then.
	DIF [][]byte

	ring *Ring
	// ex is the executor running Handle for this Cmd (WillBlock), nil
	// once completed.
	ex      *executor
	aborted atomic.Bool
	// state is cmdFree, cmdInFlight or cmdCompleted; Complete moves it from
	// in flight to completed exactly once.
	state atomic.Uint32
	// next links completed commands in the ring's lock-free completion
	// stack (written by Complete before the push, read by the ring
	// goroutine after it).
	next *Cmd
	// ready is set by the ring goroutine when it has taken the completion
	// of this Cmd (in-order mode waits for the slot's own command).
	ready bool

	// Response, copied in by Complete.
	status    uint8
	shortRead bool
	senseLen  uint8
	readLen   uint32
	sense     [senseBufLen]byte

	cdb  [maxCDBLen]byte
	iovs [][]byte
}

const (
	cmdFree uint32 = iota
	cmdInFlight
	cmdCompleted
)

// Aborted reports whether a TMR entry (ABORT TASK, LUN RESET, ...) named
// this command: the kernel has already answered the initiator, so the
// handler should skip the command's I/O and complete it quickly. It is safe
// to call from any goroutine.
func (c *Cmd) Aborted() bool { return c.aborted.Load() }

// DataLen is the total length of Data: the transfer length the kernel
// allocated for the command.
func (c *Cmd) DataLen() int {
	n := 0
	for _, b := range c.Data {
		n += len(b)
	}
	return n
}

// Response is the outcome of a command, written into the ring by
// Ring.Complete.
type Response struct {
	// Status is the SAM status: 0x00 GOOD, 0x02 CHECK CONDITION, 0x08 BUSY,
	// 0x18 RESERVATION CONFLICT, 0x28 TASK SET FULL, ...
	Status uint8
	// Sense is copied into rsp.sense_buffer, truncated to 96 bytes
	// (TCMU_SENSE_BUFFERSIZE). The kernel reads it only with CHECK
	// CONDITION.
	Sense []byte
	// ReadLen is the number of data-in bytes actually valid when fewer than
	// the buffers hold; meaningful only with ShortRead.
	ReadLen uint32
	// ShortRead asks the kernel to transfer only ReadLen bytes
	// (TCMU_UFLAG_READ_LEN). It is ignored when the mailbox lacks
	// CapReadLen, and the kernel ignores a ReadLen of 0 (it then
	// transfers the whole buffer): zero-fill what was not read.
	ShortRead bool
}

// reset prepares a recycled Cmd for its next use.
func (c *Cmd) reset() {
	c.ID = 0
	c.CDB = nil
	clear(c.iovs)
	c.iovs = c.iovs[:0]
	c.Data, c.BidiData, c.DIF = nil, nil, nil
	c.aborted.Store(false)
	c.next = nil
	c.ready = false
	c.status, c.shortRead, c.senseLen, c.readLen = 0, false, 0, 0
	c.state.Store(cmdFree)
}
