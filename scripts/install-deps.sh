#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# install-deps.sh: install the Debian 12 packages lunbridge's tests need.
# Idempotent and quick when everything is there; scripts/test.sh runs it.
#
#   qemu-system-x86 busybox-static cpio kmod   boot Debian's kernel in a VM
#                                               (integration/vmtest)
#   xz-utils                                    xz: 6.12's modules are .ko.xz,
#                                               decompressed for the initramfs
#   fio sg3-utils sdparm                        host tools the guest runs via
#                                               hostrun (chroot to the host's /)
#   libiscsi-bin qemu-utils qemu-block-extra    host-side iSCSI initiators
#                                               (iscsi-inq, iscsi-test-cu,
#                                               qemu-img iscsi://)
#   prometheus curl                             a real Prometheus server scrapes
#                                               lunbridge in the guest and curl
#                                               queries its HTTP API (both via
#                                               hostrun); promtool checks
#                                               examples/{prometheus,alerts}.yml
#   open-iscsi                                  iscsiadm and iscsid, run in the
#                                               guest via hostrun: the Linux
#                                               initiator stack over a lunbridge
#                                               LUN (TestOpenISCSI)
#   multipath-tools                             multipathd, multipath (and
#                                               dmsetup, kpartx): the Linux
#                                               multipath client over two
#                                               gateways, run in the guest
#                                               via hostrun with the host's
#                                               udevd (TestMultipath)
#   xfsprogs                                    mkfs.xfs, xfs_repair for XFS
#                                               on a LUN (TestOpenISCSI)
#   targetcli-fb python3-rtslib-fb python3-gi   TestTargetcli: targetcli and
#   dbus                                        targetctl create/save/restore
#                                               user:lunbridge backstores in the
#                                               guest (via hostrun); python3-gi
#                                               is how targetcli asks D-Bus for
#                                               handlers; dbus-daemon is the
#                                               guest's system bus and the bus
#                                               of tcmuservice's unit tests
#   fuse3                                       fusermount3: the FUSE view's
#                                               unit tests run as a normal
#                                               user too (.ci/run)
#   glusterfs-server glusterfs-client xfsprogs  a replica-3 GlusterFS volume
#                                               inside the guest (glusterd,
#                                               bricks on XFS, the FUSE
#                                               client), run via hostrun:
#                                               integration/gluster_test.go
#   gcc libc6-dev linux-libc-dev                cgo for -race, and the TCMU ABI
#                                               offsets check against
#                                               <linux/target_core_user.h>
#   libcap2-bin                                 capsh: TestSecurity runs the
#                                               daemon in the guest with the
#                                               systemd unit's capability
#                                               bounding set
#   lintian                                     Debian's package checker:
#                                               TestDebianPackage runs it on the
#                                               .deb of scripts/package.sh (no
#                                               error or warning may be left)
#
# The kernel packages themselves (linux-image-6.1.0-NN-amd64, and
# linux-image-6.12.N+deb12-amd64-unsigned with LUNBRIDGE_KERNEL=6.12) are not installed:
# integration/vmtest downloads it with `apt-get download` into its cache.
set -euo pipefail

pkgs=(qemu-system-x86 busybox-static cpio kmod xz-utils fio sg3-utils sdparm libiscsi-bin
	qemu-utils qemu-block-extra prometheus curl open-iscsi multipath-tools xfsprogs
	targetcli-fb python3-rtslib-fb python3-gi dbus fuse3
	gcc libc6-dev linux-libc-dev libcap2-bin lintian)
# The GlusterFS harness of integration/gluster_test.go (see above).
pkgs+=(glusterfs-server glusterfs-client)

if ! command -v apt-get >/dev/null; then
	echo "install-deps: no apt-get (not Debian?); install these yourself: ${pkgs[*]}" >&2
	exit 0
fi

sudo=()
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		echo "install-deps: not root and no password-less sudo; not installing." >&2
		echo "install-deps: real-kernel tests will skip (or fail with LUNBRIDGE_INTEGRATION=require) if these are missing: ${pkgs[*]}" >&2
		exit 0
	fi
fi

# apt waits for another apt or dpkg (unattended-upgrades on a fresh machine)
# instead of failing at once: DPkg::Lock::Timeout covers the dpkg lock; a
# run that still fails on a lock (the lists lock of apt-get update) is
# retried for up to 10 minutes.
apt_wait() {
	local deadline=$((SECONDS + 600)) err
	err=$(mktemp)
	while true; do
		if "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 "$@" 2>"$err"; then
			cat "$err" >&2
			rm -f "$err"
			return 0
		fi
		cat "$err" >&2
		if ! grep -qi 'could not get lock\|unable to lock\|is another process using it' "$err" || [ $SECONDS -ge $deadline ]; then
			rm -f "$err"
			return 1
		fi
		echo "install-deps: another apt or dpkg holds the lock; waiting" >&2
		sleep 5
	done
}

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

# apt-get update once when something is missing, or when the package lists
# are older than a day or do not know linux-image-amd64 (vmtest resolves
# the current kernel package from them and downloads it).
stale=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)
if [ ${#missing[@]} -gt 0 ] || [ -z "$stale" ] || ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
	echo "install-deps: apt-get update"
	apt_wait update -q ||
		echo "install-deps: apt-get update failed; going on with the lists we have" >&2
fi

if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt_wait install -y -q --no-install-recommends "${missing[@]}"
	# Failure stops here (set -e): scripts/test.sh reports it and goes on, and
	# the tests that need a missing tool skip or fail with the reason.
else
	echo "install-deps: all packages present"
fi
