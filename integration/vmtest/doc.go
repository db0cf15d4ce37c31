// SPDX-License-Identifier: Apache-2.0

// Package vmtest boots Debian's stock kernel under qemu (software emulation,
// no KVM needed) and runs a shell script in it, so that lunbridge can be
// tested against the real configfs, target_core_user, tcm_loop and
// iscsi_target_mod.
//
// # Model
//
// A guest is a throwaway machine: a Debian kernel and an initramfs made of
// busybox-static and the kernel's own modules (Modules, in the order
// modprobe --show-depends gives). LUNBRIDGE_KERNEL picks the kernel line:
//
//	6.1 (default)  Debian 12's linux-image-6.1.0-NN-amd64, resolved
//	               through the linux-image-amd64 metapackage
//	6.12           linux-image-6.12.N+deb12-amd64-unsigned from Debian
//	               12's security archive (the kernel of Debian 13),
//	               resolved through linux-image-6.12-amd64; its modules
//	               are .ko.xz and go into the initramfs decompressed
//	               (busybox insmod loads plain .ko only)
//
// Either is fetched once with apt-get download, so a point release needs
// no change here; KernelLine tells a test which one it runs on. Its
// /init mounts proc, sysfs, devtmpfs, tmpfs (/tmp, /run) and configfs, loads
// the modules, mounts two 9p shares and runs the test script:
//
//	/mnt/host   the per-VM share (VM.ShareDir / Result.ShareDir): Options.Files
//	            are copied there before boot; what the script writes there
//	            the host reads after (or during) the run.
//	/hostroot   the host's / read-only, with the guest's /dev /proc /sys /tmp
//	            /run bound into it, so `hostrun fio ...` or `hostrun sg_inq
//	            /dev/sda` runs the host's program (chroot) against guest
//	            devices. Inside hostrun, guest files are visible under /tmp
//	            and /dev; the share is at /mnt (when the host has a /mnt).
//
// The script runs as root under busybox sh with "set -e -x" (Options.NoTrace
// drops -x) in /tmp; its exit status is Result.ExitCode. The guest then
// powers off. A kernel panic ends qemu (panic=-1, -no-reboot): Wait reports
// ErrCrashed. A guest that dies before its script starts (TCG rarely
// panics a kernel in early boot) is booted again, once, with a line in the
// console saying so; a crash once the script runs is never retried. A run
// longer than Options.Timeout (default 5 min) is killed: ErrTimeout. The
// console (kernel warnings, the script's xtrace and output) goes to
// Options.Console line by line, to t.Log by default in tests, and the last
// lines are in every error.
//
// Assets are cached in CacheDir ($LUNBRIDGE_CACHE, default
// <module root>/.cache/vmtest, git-ignored): the .debs (~70 MB for 6.1,
// ~107 MB for 6.12), each unpacked in a tree of its own, the resolved
// package name of each line (debs/resolved, debs/resolved-6.12), and
// initramfs images named by the kernel release and the hash of their
// content, so the two lines never share or overwrite an asset.
// Host packages are installed by scripts/install-deps.sh (the test command,
// scripts/test.sh, runs it); the harness only checks for them.
// VMTEST_QEMU names a qemu-system-x86_64 binary, VMTEST_KERNEL a
// linux-image .deb to use instead of downloading one. At most
// LUNBRIDGE_VM_SLOTS guests (default 1) run at once on a machine, across
// test processes; waiting for a slot does not count against Timeout.
//
// # Gate
//
// Every real-kernel test starts with Require (Run and Boot do it): without
// LUNBRIDGE_INTEGRATION the test skips; with LUNBRIDGE_INTEGRATION=1 a
// missing asset (qemu, busybox-static, the kernel package) skips it with
// the reason; with LUNBRIDGE_INTEGRATION=require (CI) it fails.
// RequireTools does the same for host programs the test runs itself.
//
// # Use
//
// A script that must succeed:
//
//	func TestSomething(t *testing.T) {
//		bin := vmtest.BuildLunbridge(t) // static, cached per process
//		vmtest.Run(t, vmtest.Options{
//			Files:  map[string]string{"lunbridge": bin},
//			Script: `/mnt/host/lunbridge --version`,
//		})
//	}
//
// A test that acts on the host while the guest runs (iSCSI from the host):
//
//	vm := vmtest.Boot(t, vmtest.Options{Net: true, Script: `
//		d=$(fileio_create disk /tmp/disk.img 16M)
//		iscsi_export iqn.2026-01.test:disk "$d"
//		signal exported
//		waitfor done`})
//	if err := vm.WaitReady(ctx, "exported"); err != nil { ... }
//	// talk to 127.0.0.1:vm.HostPort() ...
//	vm.Signal("done")
//	res, err := vm.Wait()
//
// # Guest library
//
// /lib/vmtest.sh (GuestLib) is sourced before every script. CFG is
// /sys/kernel/config/target. Functions (each returns non-zero on failure):
//
//	die MSG                      print FAIL: MSG and exit 1
//	signal NAME                  make the host's VM.WaitReady(NAME) return
//	signalled NAME               true once the host has called VM.Signal(NAME)
//	waitfor NAME [SECONDS]       wait for the host's VM.Signal(NAME) (default 300 s)
//	fileio_create NAME FILE SIZE [CONTROL]
//	                             in-kernel fileio backstore core/fileio_0/NAME on
//	                             FILE; prints its configfs directory
//	fileio_remove NAME           remove it (and fileio_0 when empty)
//	loop_export WWN DIR [LUN]    export backstore DIR via tcm_loop as target
//	                             naa.WWN (16 hex digits, e.g. 5001405000000001);
//	                             prints /dev/sdX
//	loop_dev WWN [LUN]           /dev/sdX of a tcm_loop LUN, found through the
//	                             tpgt's SCSI address in sysfs (waits up to 30 s)
//	loop_sg WWN [LUN]            /dev/sgN of the same LUN
//	loop_unexport WWN            remove its LUNs, nexus and target
//	iscsi_export IQN DIR [LUN]   export DIR over iSCSI on 0.0.0.0:3260, no auth,
//	                             generate_node_acls (host: 127.0.0.1:HostPort())
//	iscsi_unexport IQN           disable and remove the target
//	target_leftovers             fail, listing them, if any backstore or
//	                             loopback/iSCSI target remains in configfs
//	hostrun CMD ARGS...          run a host program (chroot /hostroot)
//
// Binaries for the guest must be static: BuildLunbridge and BuildTestBinary
// build with CGO_ENABLED=0.
package vmtest
