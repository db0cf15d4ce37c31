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
package bridge
