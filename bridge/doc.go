// Package bridge turns SCSI commands from a TCMU ring into operations on a
// backing file: a LUN is a file.
//
// Each LUN owns one tcmu ring. Commands run through a scsi.Disk whose
// Backend is the file (preadv/pwritev straight into the ring's data area,
// fdatasync, hole punching) and complete out of order. What cannot block
// runs inline on the ring's UIO waiter (tcmu.Inliner): commands answered
// from memory, and READ and WRITE on a memory-backed file (tmpfs, ramfs);
// the rest goes to a bounded pool of workers through a queue that never
// blocks the ring. Counters are
// lock-free; LUN.Stats and LUN.Info return value snapshots, which is all
// the FUSE view and the CLI ever see.
//
// The backing file may be on a network or FUSE file system, which may lie
// and may fail (docs/distributed-fs.md). Zeroing uses a fallocate mode
// only after Open proved on a scratch file next to the backing file that
// it zeroes (zero.go); otherwise it writes zeros. A file system gone from
// under the file (ENOTCONN, ESTALE) fails the LUN with the reason and NOT
// READY until it is set online, which reopens a dead descriptor (lost.go).
// Workers blocked in a hung file system may outlive Serve; the ring
// mapping and the descriptors they use are released only when they return
// (lifetime.go).
package bridge
