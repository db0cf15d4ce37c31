// SPDX-License-Identifier: Apache-2.0

// Package uring is the small part of Linux's io_uring that lunbridge uses:
// vectored reads and writes of a file at an offset, submitted from any
// goroutine and completed through an eventfd that Go's netpoller watches.
//
// Why: a buffered write to a page-cache file system can wait (the
// journal, dirty-page throttling), so it cannot be a raw system call, and
// as a blocking-style one (syscall.Syscall) it wakes the runtime's sysmon,
// which then preempts the writing thread every 20-40 µs for as long as
// the call lasts and hands its P to another thread (BENCHMARKS.md,
// section 17). Submitted here, the write runs in the kernel's own worker
// thread (io-wq) or inline when the file system can do it without
// waiting; the goroutine parks on a channel, its thread is free, and no
// system call of the runtime's kind is made on the way.
//
// The kernel's ABI is include/uapi/linux/io_uring.h; only what is used is
// declared. A Ring needs IORING_FEAT_SUBMIT_STABLE (Linux 5.5): the kernel
// has read everything an entry points at when io_uring_enter returns.
package uring
