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
// a bad entry ends Run with ErrCorruptRing), writes responses, stores
// cmd_tail and kicks: single-threaded code with no goroutines, not safe
// for concurrent use, run only by whoever holds the ring's lock. Its
// scheduler (ring.go) decides who that is: the UIO waiter when the kernel
// signals an idle ring, the goroutine completing the last command in
// flight, else the ring goroutine, which batches (Ring lists them). A
// Handler gets each Cmd and must not block; an Inliner may also have the
// waiter execute a command itself, unlocked, under a watchdog that hands
// the waiter's role to a fresh goroutine if the command runs long (the
// waiter, its inline batches and the watchdog are in waiter.go). Which commands are inline is
// the Inliner's policy (package bridge: what is answered from memory, I/O
// on a memory-backed file, reads that hit the page cache); RunInline may
// still find that one would block and hand it to its workers, which
// complete it later like any Handled command.
// Cmd.Data are slices of the data area, so a handler can preadv/pwritev
// straight into them. The byte layout lives in abi.go, one offset constant
// per field of <linux/target_core_user.h>, and is checked against the
// kernel header by TestOffsetsMatchKernelHeader.
//
// How the waiter waits is experimental (RingOptions; lunbridge's hidden
// --x-waiter and --x-spin flags), to be settled by measurement. By
// default (WaiterNetpoll) it parks in Go's netpoller on the non-blocking
// UIO descriptor. WaiterBlocking locks it to an OS thread that blocks in
// poll(2) on the descriptor and an eventfd (which the end of the context,
// or Device.Close, writes to interrupt it), so that the kernel wakes the
// serving thread itself; a relieved waiter unlocks as it exits and its
// successor locks a thread of its own. RingOptions.Spin makes the waiter,
// after a poll that took entries, watch cmd_head for a while without
// system calls before it waits again (a netpoll waiter yields its P to
// other goroutines meanwhile; a locked one keeps it). No signal is lost
// to the spin: the kernel signals UIO after the entries it queues (after
// each, or once when it unplugs a batch: tcmu_unplug_device, Linux 5.12+)
// and the spin consumes no signal, so one that arrives meanwhile makes
// the next wait return at once (finding the entries already served, or
// new ones).
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
