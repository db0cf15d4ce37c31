// SPDX-License-Identifier: Apache-2.0

// Package configfs is lunbridge's one file layer over configfs and sysfs,
// and its one fake kernel.
//
// # Model
//
// LIO is driven entirely through files: mkdir makes an object (a
// backstore, a target, a LUN, an ACL) and the kernel fills it with
// attributes and default groups; each write(2) to an attribute is parsed
// on its own; a symlink links a LUN to its backstore or an ACL's mapped
// LUN to a LUN; rmdir removes an object once it holds nothing made by a
// user. Packages tcmu (backstores) and fabric (targets) and the LIO policy
// package drive configfs through the FS interface: OS in production, Fake
// in unit tests.
//
// Fake plays the kernel over a temporary directory: it makes the default
// attributes and groups a mkdir makes in target/core/user_N,
// target/loopback and target/iscsi, parses a TCMU backstore's control
// string, registers a UIO device (a regular file holding a mailbox) when
// a backstore is enabled, registers a SCSI disk in its sysfs when a
// loopback LUN is linked, refuses rmdir while user-made entries remain or
// a symlink points at the directory, and logs every change relative to
// its root so that tests compare the exact sequence of operations.
//
// Faulty wraps an FS (the Fake) and fails its Nth call, so that the tests
// of a multi-step constructor (tcmu.OpenDevice, the fabric targets'
// AddLUN) fail each step in turn and check that nothing acquired before
// it is left behind.
package configfs
