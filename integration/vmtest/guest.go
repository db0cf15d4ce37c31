// SPDX-License-Identifier: Apache-2.0

package vmtest

// Guest-side paths. The share is the per-VM host directory (VM.ShareDir);
// everything under .vmtest/ in it belongs to the harness.
const (
	// GuestShare is where the guest mounts the per-VM share (9p tag "host").
	GuestShare = "/mnt/host"
	// GuestHostRoot is where the guest mounts the host's / read-only.
	GuestHostRoot = "/hostroot"
)

// initScript is the guest's PID 1. It sets up the guest, runs the test script
// from the share and powers off. Its console markers ("vmtest: ...") are what
// the host side reports when something goes wrong before the script runs.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
echo # SeaBIOS leaves the cursor after "Booting from ROM..."
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run

setup_failed() {
	echo "vmtest: SETUP FAILED: $*"
	poweroff -f
}

# Dependencies first (order computed on the host with modprobe --show-depends).
while read -r m; do
	insmod "/lib/modules/$m" || setup_failed "insmod $m"
done < /lib/modules/vmtest.order
mount -t configfs configfs /sys/kernel/config || setup_failed "mount configfs"
mkdir -p /etc/target/pr

opts=trans=virtio,version=9p2000.L,msize=512000,cache=none
mount -t 9p -o $opts host /mnt/host || setup_failed "mount 9p share"
mkdir -p /mnt/host/.vmtest/guest /mnt/host/.vmtest/host

# The host's / read-only, with the guest's /dev, /proc, /sys, /tmp and /run
# bound into it, so host tools (fio, sg3-utils) run against guest devices
# via chroot: see /bin/hostrun.
if mount -t 9p -o $opts,ro hostroot /hostroot; then
	for d in dev proc sys tmp run; do
		mount --bind /$d /hostroot/$d || setup_failed "bind /$d into /hostroot"
	done
	[ -d /hostroot/mnt ] && mount --bind /mnt/host /hostroot/mnt
else
	setup_failed "mount 9p hostroot"
fi

if [ -e /mnt/host/.vmtest/net ]; then
	ip link set lo up
	ip link set eth0 up || setup_failed "eth0 up"
	ip addr add 10.0.2.15/24 dev eth0 || setup_failed "eth0 address"
fi

echo "vmtest: guest ready (kernel $(uname -r)), running script"
cd /tmp
/bin/sh /mnt/host/.vmtest/run.sh
rc=$?
echo $rc > /mnt/host/.vmtest/exit.tmp && mv /mnt/host/.vmtest/exit.tmp /mnt/host/.vmtest/exit
sync
echo "vmtest: script exit status $rc"
poweroff -f
`

// hostrunScript runs a host program inside the guest: the host's / is
// mounted read-only at /hostroot with the guest's /dev, /proc, /sys, /tmp and
// /run bound into it (and the share at /mnt when the host has a /mnt), so
// `hostrun fio --filename=/dev/sda ...` drives a guest device with the host's
// fio and shared libraries.
const hostrunScript = `#!/bin/sh
exec chroot /hostroot /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
`

// modprobeScript is the guest's /sbin/modprobe, the kernel's usermode helper
// for request_module (e.g. target_core_mod asks for every backstore module
// when configfs is first used). Every module is loaded by /init already, so
// it only answers whether the module is there, quietly.
const modprobeScript = `#!/bin/sh
for m; do
	case $m in -*) continue ;; esac
	[ -d "/sys/module/$(echo "$m" | tr - _)" ] || exit 1
done
exit 0
`

// GuestLib is a shell library installed in the guest as /lib/vmtest.sh and
// sourced before every script. Its functions are the vocabulary of the
// real-kernel tests; see the package documentation for the list.
const GuestLib = `# vmtest guest library: sourced before every test script. Scripts run with
# set -e, so a command here that may fail on purpose carries "|| true".
CFG=/sys/kernel/config/target

# die MSG...: print MSG and fail the script.
die() { echo "FAIL: $*" >&2; exit 1; }

# signal NAME: tell the host NAME happened (VM.WaitReady(ctx, NAME) returns).
signal() {
	: > "/mnt/host/.vmtest/guest/$1.tmp" && mv "/mnt/host/.vmtest/guest/$1.tmp" "/mnt/host/.vmtest/guest/$1"
}

# signalled NAME: true once the host has called VM.Signal(NAME).
signalled() {
	[ -e "/mnt/host/.vmtest/host/$1" ]
}

# waitfor NAME [SECONDS]: wait (default 300 s) until the host calls
# VM.Signal(NAME); fail if it does not.
waitfor() {
	_n=$(( ${2:-300} * 10 ))
	while ! signalled "$1"; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || { echo "waitfor $1: timed out after ${2:-300}s" >&2; return 1; }
		sleep 0.1
	done
}

# fileio_create NAME FILE SIZE [CONTROL]: create the in-kernel fileio
# backstore core/fileio_0/NAME on FILE (created with SIZE bytes if missing)
# and enable it. Prints the backstore's configfs directory.
fileio_create() {
	[ -e "$2" ] || truncate -s "$3" "$2" || return 1
	_d=$CFG/core/fileio_0/$1
	mkdir -p "$_d" || return 1
	echo -n "fd_dev_name=$2,fd_dev_size=$3${4:+,$4}" > "$_d/control" || return 1
	echo 1 > "$_d/enable" || return 1
	echo "$_d"
}

# fileio_remove NAME: remove core/fileio_0/NAME, and fileio_0 when empty.
fileio_remove() {
	rmdir "$CFG/core/fileio_0/$1" || return 1
	rmdir "$CFG/core/fileio_0" 2>/dev/null || true
}

# loop_export WWN BACKSTORE [LUN]: export the backstore directory through
# tcm_loop as target naa.WWN (WWN: 16 hex digits starting with 5), LUN
# number LUN (default 0), and print the /dev/sdX it became. The ln -s blocks
# until the kernel's SCSI scan of the LUN finishes.
loop_export() {
	_t=$CFG/loopback/naa.$1/tpgt_1
	mkdir -p "$_t/lun/lun_${3:-0}" || return 1
	if [ "$(cat "$_t/nexus" 2>/dev/null)" = "" ]; then
		echo -n "naa.$(loop_initiator "$1")" > "$_t/nexus" || return 1
	fi
	ln -s "$2" "$_t/lun/lun_${3:-0}/lun" || return 1
	loop_dev "$1" "${3:-0}"
}

# loop_initiator WWN: the initiator port WWN used for target WWN's nexus.
loop_initiator() { echo "$1" | sed 's/.$/f/'; }

# loop_dev WWN [LUN]: print /dev/sdX of LUN (default 0) of tcm_loop target
# naa.WWN, waiting up to 30 s for it. The tpgt's "address" attribute is the
# SCSI host:channel:target of the loopback port, so the disk is found through
# /sys/class/scsi_device/H:C:T:LUN, never by guessing its name.
loop_dev() {
	_a=$(cat "$CFG/loopback/naa.$1/tpgt_1/address") || return 1
	_n=300
	while :; do
		for _b in /sys/class/scsi_device/$_a:${2:-0}/device/block/*; do
			[ -e "$_b" ] && [ -b "/dev/${_b##*/}" ] && { echo "/dev/${_b##*/}"; return 0; }
		done
		_n=$((_n - 1))
		[ $_n -gt 0 ] || { echo "loop_dev $1: no block device for $_a:${2:-0}" >&2; return 1; }
		sleep 0.1
	done
}

# loop_sg WWN [LUN]: print the /dev/sgN of the LUN (like loop_dev).
loop_sg() {
	_a=$(cat "$CFG/loopback/naa.$1/tpgt_1/address") || return 1
	for _b in /sys/class/scsi_device/$_a:${2:-0}/device/scsi_generic/*; do
		[ -e "$_b" ] && { echo "/dev/${_b##*/}"; return 0; }
	done
	echo "loop_sg $1: no sg device for $_a:${2:-0}" >&2
	return 1
}

# unlink_luns DIR: remove the backstore symlinks in LUN directory DIR (the
# other entries are the LUN's own attributes and go with rmdir).
unlink_luns() {
	for _s in "$1"/*; do
		[ -L "$_s" ] && { rm "$_s" || return 1; }
	done
	return 0
}

# loop_unexport WWN: remove every LUN of target naa.WWN, its nexus and the
# target, in reverse order of creation.
loop_unexport() {
	_t=$CFG/loopback/naa.$1/tpgt_1
	for _l in "$_t"/lun/lun_*; do
		[ -d "$_l" ] || continue
		unlink_luns "$_l" && rmdir "$_l" || return 1
	done
	echo -n NULL > "$_t/nexus" 2>/dev/null || true
	rmdir "$_t" && rmdir "$CFG/loopback/naa.$1"
}

# iscsi_export IQN BACKSTORE [LUN]: export the backstore as LUN (default 0)
# of iSCSI target IQN on 0.0.0.0:3260, without authentication, any initiator
# allowed (generate_node_acls). Reach it from the host at 127.0.0.1:VM.HostPort().
iscsi_export() {
	_t=$CFG/iscsi/$1/tpgt_1
	mkdir -p "$_t/lun/lun_${3:-0}" || return 1
	ln -s "$2" "$_t/lun/lun_${3:-0}/lun" || return 1
	[ -d "$_t/np/0.0.0.0:3260" ] || mkdir "$_t/np/0.0.0.0:3260" || return 1
	echo 0 > "$_t/attrib/authentication" &&
	echo 1 > "$_t/attrib/generate_node_acls" &&
	echo 1 > "$_t/attrib/cache_dynamic_acls" &&
	echo 0 > "$_t/attrib/demo_mode_write_protect" &&
	echo 1 > "$_t/enable"
}

# iscsi_unexport IQN: disable and remove iSCSI target IQN.
iscsi_unexport() {
	_t=$CFG/iscsi/$1/tpgt_1
	echo 0 > "$_t/enable" || true
	for _l in "$_t"/lun/lun_*; do
		[ -d "$_l" ] || continue
		unlink_luns "$_l" && rmdir "$_l" || return 1
	done
	for _p in "$_t"/np/*; do
		[ -d "$_p" ] && { rmdir "$_p" || return 1; }
	done
	rmdir "$_t" && rmdir "$CFG/iscsi/$1"
}

# target_leftovers: print every backstore and fabric target still in configfs
# (nothing after a complete teardown); fail if there is one.
target_leftovers() {
	_left=$(
		for _d in "$CFG"/core/*_[0-9]*/* "$CFG"/loopback/naa.* "$CFG"/iscsi/iqn.* "$CFG"/iscsi/eui.* "$CFG"/iscsi/naa.*; do
			[ -d "$_d" ] && echo "$_d"
		done
		for _d in "$CFG"/core/*_[0-9]*; do
			[ -d "$_d" ] && echo "$_d"
		done
		true
	)
	[ -z "$_left" ] && return 0
	echo "configfs leftovers:" >&2
	echo "$_left" >&2
	return 1
}
`
