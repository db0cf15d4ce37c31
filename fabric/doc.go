// SPDX-License-Identifier: Apache-2.0

// Package fabric exports LIO backstores to initiators by writing configfs:
// the tcm_loop fabric (LUNs become local /dev/sdX disks) and the iSCSI
// fabric (iscsi_target_mod, LUNs reachable over TCP).
//
// # Model
//
// LIO separates storage from transport. A backstore
// (target/core/<hba>/<name>, e.g. a TCMU user device made by package tcmu,
// or an in-kernel fileio one) holds the data. A fabric module owns
// targets: a WWN directory (target/loopback/naa.…, target/iscsi/iqn.…)
// with target portal groups (tpgt_1). A LUN is a directory
// tpgt_1/lun/lun_N holding one symlink to a backstore: creating that link
// is what exports the storage, and it cannot be removed while linked.
// iSCSI adds network portals (tpgt_1/np/ADDR:PORT), node ACLs
// (tpgt_1/acls/<initiator IQN>, with mapped LUNs linking back to
// tpgt_1/lun/lun_N) and CHAP credentials (auth/ directories). An
// ISCSITarget with no ACL admits no initiator (generate_node_acls=0);
// only AllowAnyInitiator turns on LIO's demo mode, where any initiator
// gets a generated ACL at login.
//
// Every configfs change goes through a journal. LoopTarget and
// ISCSITarget record each mkdir, symlink and attribute they change, per
// LUN and for the target as a whole; RemoveLUN and Remove undo exactly
// those entries, newest first, and leave configfs as they found it.
// Directories that existed before are used but never removed, with one
// exception: a loopback LUN directory that already links the same
// backstore (left by a lunbridge that crashed) is adopted and removed
// with the LUN.
//
// # Ordering constraints
//
//   - The loopback LUN link returns only after the kernel scanned the new
//     SCSI device, and the scan's commands go to the backstore: a TCMU
//     ring must be served before AddLUN and until RemoveLUN returned.
//   - A backstore can be removed only after every LUN linking it is gone:
//     remove the fabric side first.
//   - iSCSI mapped LUNs go before the LUN they point at, ACLs before the
//     portal group, and the portal group is disabled first on Remove.
//
// # Seen on Linux 6.1 (Debian 6.1.0-56, integration tests)
//
//   - target/loopback and target/iscsi exist only once made: the first
//     mkdir registers the fabric. They are not removed afterwards.
//   - tcm_loop's tpgt_1/address reads "H:0:T"; the disk of LUN L is
//     /sys/class/scsi_device/H:0:T:L/device/block/sdX.
//   - If the scan of a new loopback LUN fails (the handler answered
//     nothing or CHECK CONDITION), the link still returns, no disk appears
//     and AddLUN fails after ScanTimeout; on the rollback the kernel logs
//     "Unable to locate struct scsi_device" and "Unable to remove TCM_Loop
//     I_T Nexus with active TPG port count: 1", yet the directories go.
//   - Several iSCSI targets can each have np/0.0.0.0:3260: they share the
//     listening socket.
//   - With CHAP, a wrong or missing secret fails login with
//     "Authentication failure(513)", an initiator outside the ACLs with
//     "Authorization failure(514)"; in demo mode the tpgt_1/auth
//     credentials apply.
//   - Mutual CHAP with libiscsi 1.19 as the initiator: a wrong target
//     secret fails at the initiator ("Invalid CHAP_R response from the
//     target"), a wrong target user too ("Wrong CHAP targetname
//     received"), and an initiator that asks a one-way target to prove
//     itself gets "It did not return CHAP_N during SECNEG".
//   - The auth/ files show mode 0644, but LIO answers a read only with
//     CAP_SYS_ADMIN (EPERM otherwise), and refuses a write without it:
//     configfs ownership alone is not enough for CHAP.
//
// All paths are relative to configurable roots (ConfigfsRoot, SysfsRoot,
// DevRoot), so the unit tests run on a temporary directory with a fake
// kernel; integration/fabric_test.go runs the same code against Linux.
package fabric
