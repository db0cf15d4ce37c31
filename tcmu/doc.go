// SPDX-License-Identifier: Apache-2.0

// Package tcmu speaks the kernel side of TCMU (target_core_user, Linux's
// "TCM in userspace" backstore): the configfs lifecycle of a user
// backstore, its UIO device, and the command ring shared with the kernel
// through mmap.
//
// # The model
//
// A TCMU backstore is a configfs directory, target/core/user_<N>/<name>.
// Writing its control file (dev_config, dev_size, hw_block_size, ...) and
// enable makes the kernel create a UIO device whose name is
// "tcm-user/<N>/<name>/<dev_config>". OpenDevice does that (or adopts a
// backstore a killed lunbridge left behind, recognised by its dev_config
// prefix "lunbridge/"), opens /dev/uioN non-blocking, and maps its one
// memory region:
//
//	+---------+--------------------------+-------------------------+
//	| mailbox | command ring (cmdr_size) | data area               |
//	+---------+--------------------------+-------------------------+
//	0         cmdr_off (128)             cmdr_off + cmdr_size
//
// The kernel queues each SCSI command as an entry in the ring (a header,
// the iovecs of its data buffers as offsets into the data area, the CDB),
// advances the mailbox's cmd_head and signals the UIO device. Entries that
// would not fit before the end of the ring are preceded by a PAD entry;
// task management requests arrive as TMR entries naming aborted commands.
// Userspace completes a command by writing its status, sense data and, for
// a short read, its length into an entry slot at cmd_tail, advancing
// cmd_tail and writing to the UIO device. With CAP_OOOC completions may be
// out of order: the slot at the tail takes the response of whichever
// command finished, with that command's id.
//
// Ring serves this protocol in two layers, each in its own file. Its codec
// (codec.go, the field Ring.codec) parses entries into Cmds (the ring is
// untrusted: every length and offset is checked against the mapping, and
// a bad entry ends Run with ErrCorruptRing), writes responses and stores
// cmd_tail: single-threaded code with no goroutines, not safe for
// concurrent use, run only by whoever holds the ring's lock. Its scheduler
// (ring.go, executor.go) runs every command on an executor: a goroutine
// that takes the command (parsing the ring itself when its queue is
// empty), executes it (Handler.Handle) and completes it, writing the
// response and kicking the kernel itself, the way a C handler's thread
// reads, executes and completes. When nothing is left to take, one
// executor waits for the kernel's signal and the others park, each on its
// own eventfd in the netpoller (bell.go), so that the thread idle in
// epoll_wait on another CPU runs the one woken at once; an executor
// wakes another only for commands left in the queue while fewer than
// RingOptions.Parallel run, or to wait for the kernel while it blocks.
// Kicks asked for while one is in progress are merged into one more. A
// Handler that is about to wait on a file system asks Ring.WillBlock for
// one of the Executors-1 blocking slots first, so that one executor always
// stays free for the kernel's signal, memory commands and TMRs; a watchdog
// treats a command that runs longer than InlineBound without a slot as
// blocked. Cmd.Data are slices of the data area, so a handler can
// preadv/pwritev straight into them. The byte layout lives in abi.go, one
// offset constant per field of <linux/target_core_user.h>, and is checked
// against the kernel header by TestOffsetsMatchKernelHeader.
//
// BENCHMARKS.md ("Where the idle third went") has the measurements behind
// this shape: the previous one handed each command from a waiter goroutine
// to a ring goroutine to a worker and back, and under load its goroutines
// spent several times longer waiting for a P than running.
//
// # Restart
//
// A restarted daemon cannot trust what a killed one left in the ring: some
// slots may already hold completions written out of order. Device.Recover
// blocks the device, has the kernel return every command in the ring as
// BUSY (action/reset_ring, level 1; initiators retry BUSY) and unblocks
// it; a new Ring then serves the ring from the start, processing it once
// right away because the UIO descriptor only wakes on new events.
//
// # Announcements
//
// When a user backstore is enabled or deleted, the kernel multicasts a
// TCMU_CMD_ADDED_DEVICE or TCMU_CMD_REMOVED_DEVICE message on the
// "config" group of the TCM-USER generic netlink family, naming the UIO
// device. Events listens to them (to serve backstores that targetcli
// creates); ListDevices reads the same backstores from configfs. Handler
// daemons share these messages: each must act only on its own dev_config
// subtype ("lunbridge/" here). A daemon that announces reply support
// (TCMU_CMD_SET_FEATURES, as tcmu-runner does) makes the kernel wait for
// a reply to every later ADDED_DEVICE, unless the backstore was created
// with nl_reply_supported=-1, as OpenDevice does; lunbridge never
// announces it and never replies.
package tcmu
