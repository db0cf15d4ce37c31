// SPDX-License-Identifier: Apache-2.0

// Package bridge turns SCSI commands from a TCMU ring into operations on a
// backing file: a LUN is a file.
//
// Each LUN owns one tcmu ring. Commands run through a scsi.Disk whose
// Backend is the file (preadv/pwritev straight into the ring's data area,
// fdatasync, hole punching) and complete out of order. Each command runs
// on the ring executor that took it from the ring, from parse to
// completion (tcmu.Ring); before one that may wait on the backing store
// the LUN takes one of the ring's blocking slots (tcmu.Ring.WillBlock,
// --workers of them), so that another executor keeps serving the ring.
// Which commands count as memory commands, run without a slot, depends on
// the file system of the backing file (inlinePolicy), fstatfs's answer at
// Serve:
//
//   - everywhere, the commands answered from memory (TEST UNIT READY,
//     INQUIRY, READ CAPACITY, MODE SENSE, REQUEST SENSE);
//   - on a memory-backed file (tmpfs, ramfs), READ and WRITE too: they
//     never wait on a device, and RWF_NOWAIT cannot tell, as tmpfs
//     refuses it (EOPNOTSUPP). Such a file is mapped (filemap.go), and
//     its READs and WRITEs are copies between the file's mapping and the
//     data area, with no system call; a page that faults (the file cut
//     short, tmpfs full) sends the transfer to preadv/pwritev, which
//     reports the error;
//   - on a local page-cache file system (ext4, XFS, Btrfs: an allow-list),
//     READ is tried without blocking through scsi.Disk.TryRead: the file
//     is mapped for reading, and a READ whose pages mincore finds all in
//     the page cache is a copy from the mapping (preadv2(RWF_NOWAIT) if
//     the file could not be mapped); a miss takes a slot and reads with
//     preadv. WRITE takes a slot (dirty-page throttling, journal waits),
//     and buffered WRITEs to the file take turns in userspace
//     (fileBackend.writeTurn): the file system serialises them on the
//     inode's lock anyway, and a goroutine waiting for its turn frees
//     its P where a thread asleep on that lock would hold it. A WRITE
//     of 128 KiB or more goes through the LUN's io_uring
//     (internal/uring, fileBackend.ring) where the kernel offers one:
//     it runs in the kernel's worker while the goroutine is parked,
//     instead of a blocking-style pwritev that wakes the runtime's
//     sysmon to preempt it every few tens of microseconds.
//     Gateway LUNs are never mapped (their takeover drops the page cache,
//     which a mapping would pin);
//   - with --direct-io, on a block device (its node is on devtmpfs, which
//     fstatfs calls tmpfs), on FUSE, on network file systems and on
//     anything else, only the first kind.
//
// READ and WRITE run as memory commands only when the whole process is
// marked PR_SET_IO_FLUSHER (MarkIOFlusher); otherwise each takes a slot
// and runs on a thread locked and marked for it. Stats count the
// page-cache READs served without blocking (NowaitReads) and the misses
// (NowaitFallbacks); each command counts once. Counters are
// lock-free; LUN.Stats and LUN.Info return value snapshots, which is all
// the FUSE view and the CLI ever see.
//
// The backing file may be on a network or FUSE file system, which may lie
// and may fail (docs/distributed-fs.md). Zeroing uses a fallocate mode
// only after Open proved on a scratch file next to the backing file that
// it zeroes (zero.go); otherwise it writes zeros. A file system gone from
// under the file (ENOTCONN, ESTALE) fails the LUN with the reason and NOT
// READY until it is set online, which reopens a dead descriptor (lost.go).
// Executors blocked in a hung file system may outlive Serve; the ring
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
