// SPDX-License-Identifier: Apache-2.0

// Package bridge turns SCSI commands from a TCMU ring into operations on a
// backing file: a LUN is a file.
//
// Each LUN owns one tcmu ring. Commands run through a scsi.Disk whose
// Backend is the file (preadv/pwritev straight into the ring's data area,
// fdatasync, hole punching) and complete out of order. What cannot block
// runs inline on the ring's UIO waiter (tcmu.Inliner); the rest goes to a
// bounded pool of workers through a queue that never blocks the ring.
// Which commands run inline depends on the file system of the backing
// file (inlinePolicy), fstatfs's answer at Serve:
//
//   - everywhere, the commands answered from memory (TEST UNIT READY,
//     INQUIRY, READ CAPACITY, MODE SENSE, REQUEST SENSE);
//   - on a memory-backed file (tmpfs, ramfs), READ and WRITE too: they
//     never wait on a device, and RWF_NOWAIT cannot tell, as tmpfs
//     refuses it (EOPNOTSUPP);
//   - on a local page-cache file system (ext4, XFS, Btrfs: an allow-list),
//     READ is tried with preadv2(RWF_NOWAIT) through scsi.Disk.TryRead: a
//     page-cache hit completes inline; a miss (EAGAIN, a short count)
//     goes to a worker, which reads it again with preadv. WRITE goes to
//     the workers (dirty-page throttling, journal waits);
//   - with --direct-io, on a block device (its node is on devtmpfs, which
//     fstatfs calls tmpfs), on FUSE, on network file systems and on
//     anything else, only the first kind.
//
// READ and WRITE run inline only when the whole process is marked
// PR_SET_IO_FLUSHER (MarkIOFlusher); otherwise only the workers' own
// threads are, not the waiter's. Stats count
// the inline page-cache READs (NowaitReads) and the misses handed to a
// worker (NowaitFallbacks); each command counts once. Counters are
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
//
// One file, one writer (docs/ownership.md): Open claims the backing file
// with lease.Claim before it grows, preallocates or serves it, so a
// second exporter of the file, in this daemon, another one, or on another
// client of a shared file system, is refused with the holder's name;
// gateways of one group share the claim. The claim is released with the
// last descriptor of the LUN.
//
// Snapshots (snapshot.go, cow.go, docs/snapshots.md): every change of the
// backing file passes a gate that a snapshot shuts to fix its point in
// time; the snapshot file FILE@NAME is then a clone (FICLONE) or filled by
// a paced background copy with copy-before-write, and a state file beside
// it says whether it is complete, across crashes.
package bridge
