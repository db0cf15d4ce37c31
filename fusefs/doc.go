// SPDX-License-Identifier: Apache-2.0

// Package fusefs serves the lunbridge FUSE view: one directory per LUN with
// live statistics and control files, for cat, echo, watch and shell scripts.
//
// # Model
//
// The view holds no state of its own. Every lookup, directory listing and
// open asks the daemon, through the LUNs interface, for the current list of
// LUNs (bridge.LUNInfo values with their Stats), and every write becomes one
// call of LUNs.Control. The kernel is told not to cache entries or
// attributes, so a LUN's directory appears and disappears with the LUN;
// View.Refresh additionally invalidates entries the kernel still holds (a
// shell's working directory, say).
//
// Layout, with the mode bits each file has (they tell the truth: a file
// without write bits rejects opens for writing with EACCES, even for root):
//
//	/version              0444  the daemon's version
//	/luns                 0644  one line per LUN; write a command, see below
//	/NAME/info            0444  "key value" lines: name, path, size,
//	                            block_size, serial, naa, uio, fabric,
//	                            fabric_path, state, reason (why failed or
//	                            stalled), read_only, write_cache
//	                            ("-" for an empty value); for a gateway of
//	                            a group also alua_group, alua_state,
//	                            owner, owner_group, epoch
//	/NAME/stats           0444  "key value" counter lines, always the same
//	                            keys in the same order
//	/NAME/stats.json      0444  the same counters as one JSON object
//	/NAME/latency         0444  per command kind: count and p50/p90/p99/p999
//	                            in microseconds, then the non-empty buckets
//	/NAME/state           0644  online, offline, failed or stalled; write
//	                            online or offline
//	/NAME/read_only       0644  0 or 1; write 0 or 1
//	/NAME/size            0644  bytes; write a larger size ("20G") to grow
//	/NAME/ctl             0200  write flush, reset-stats,
//	                            snapshot SNAP [rate=SIZE] or
//	                            delete-snapshot SNAP
//	/NAME/snapshots/SNAP/ 0555  one directory per snapshot
//	                            (docs/snapshots.md), its files 0444:
//	                            state (copying, ready, or "failed: "
//	                            and the reason), method (reflink or
//	                            copy), progress ("COPIED / SIZE" bytes),
//	                            created (RFC 3339), path, pause_us
//
// The stats keys are KIND_ops, KIND_bytes and KIND_errors for every kind of
// command (read, write, sync, unmap, write_same, compare_and_write, other),
// total_ops, total_bytes, total_errors, errors_SENSEKEY for every SCSI
// sense key (no_sense ... miscompare; reserved keys as errors_0x0c and
// errors_0x0f), in_flight, in_flight_max, uptime_seconds,
// inline_page_cache_reads and inline_page_cache_misses, ring_kicks,
// ring_wakeups and ring_handoffs; new keys only ever go at the end.
//
// Each line of /luns is "NAME PATH size=BYTES block-size=N read-only=0|1
// fabric=loop|iscsi|none write-through=0|1": prefixed with "export", it is
// the command that recreates the LUN.
//
// # Reads
//
// A readable file renders its whole content when it is opened and serves
// every read of that open file from this snapshot: a reader sees one
// consistent set of counters however it splits its reads. Files are opened
// with direct I/O (FOPEN_DIRECT_IO), so the page cache never serves an old
// snapshot: each open is fresh. Stat reports the snapshot's size.
//
// # Writes
//
// Each write(2) is one command line: a trailing newline is allowed, fields
// are separated by one space, and anything else (a second line, a tab, an
// unknown word, an extra field) fails with EINVAL, changes nothing and logs
// the reason. The offset is ignored and truncation (the shell's ">") is
// accepted and does nothing. The view parses each file's own grammar and
// hands LUNs.Control one canonical command:
//
//	file       written                        Control(name, line)
//	/luns      export NAME PATH [size=SIZE] [block-size=512|4096]
//	           [read-only=0|1] [fabric=loop|iscsi|none] [write-through=0|1]
//	                                          ("", same, options in this
//	                                          order, SIZE in bytes)
//	/luns      remove NAME                    ("", "remove NAME")
//	state      online | offline               (NAME, same)
//	read_only  0 | 1                          (NAME, "read-only 0|1")
//	size       SIZE (bridge.ParseSize)        (NAME, "resize BYTES")
//	ctl        flush | reset-stats            (NAME, same)
//	ctl        snapshot SNAP [rate=SIZE]      (NAME, rate in bytes)
//	ctl        delete-snapshot SNAP           (NAME, same)
//
// A size smaller than the current one is refused with EINVAL (shrinking
// would cut data from under a mounted file system); the current size is a
// no-op. Every line follows bridge.ParseControl's grammar (a file that
// stands for one verb takes its arguments); an export NAME must also not
// be "version" or "luns" (ReservedName). Control errors become errnos:
// bridge.ErrInvalid EINVAL, bridge.ErrNotFound ENOENT, bridge.ErrExists
// EEXIST, a syscall.Errno itself, anything else EIO.
//
// # Mounting
//
// View.Run mounts with mount(2) directly (the daemon runs as root), with
// default_permissions so that the kernel enforces the mode bits, and with
// allow_other only if Options.AllowOther is set: otherwise only root sees
// the view. A stale mount left by a killed daemon (stat fails with
// ENOTCONN) is detached before mounting; a live FUSE mount is refused. At
// shutdown Run unmounts; if a process holds a file open, it detaches the
// mount and aborts the FUSE connection through fusectl, so shutdown never
// waits for a reader.
package fusefs
