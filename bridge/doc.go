// Package bridge turns SCSI commands from a TCMU ring into operations on a
// backing file: a LUN is a file.
//
// Each LUN owns one tcmu ring. The ring goroutine hands commands to a
// bounded pool of workers, which run them through a scsi.Disk whose Backend
// is the file (preadv/pwritev straight into the ring's data area,
// fdatasync, hole punching) and complete them out of order. Counters are
// lock-free; LUN.Stats and LUN.Info return value snapshots, which is all
// the FUSE view and the CLI ever see.
package bridge
