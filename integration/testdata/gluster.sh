# SPDX-License-Identifier: Apache-2.0
# Guest library: a replica-3 GlusterFS volume inside the guest (sourced by
# glusterLib in integration/gluster_test.go). Everything stays in the guest:
# the host's Gluster binaries run through a chroot into the host root
# (hostrun), the brick host is an address on the guest's own lo, and the
# three bricks are directories of one XFS on a brd RAM disk.
#
#   gluster_up           start glusterd, create and start volume gv, mount it
#                        at $GV (as seen from outside the chroot)
#   gv_mount DIR         mount gv again at DIR (a path inside the chroot,
#                        under /tmp); prints the outside path
#   gv_client_kill       kill -9 the FUSE client of $GV: the mount answers
#                        ENOTCONN
#   gv_brick_pid N       the pid of brick N (1-3)
#   gv_heal_pending      the number of entries still to heal
#
# Gluster refuses 127.x as a brick host: GV_HOST is the guest's own
# address, added to lo, so no packet leaves the guest kernel.
GV_HOST=10.0.2.15
GV_BRICKS=/tmp/gv-bricks
GV_INNER=/tmp/gv
GV=/hostroot$GV_INNER
GV_CLIENT_PID=/run/gv-client.pid

gluster_up() {
	_t0=$(cut -d' ' -f1 /proc/uptime)
	ip link set lo up
	ip addr add $GV_HOST/32 dev lo 2>/dev/null || true
	# One RAM disk of GV_RD_MB MiB (default 512; mkfs.xfs refuses less
	# than 300 MiB); brd allocates pages only as they are written.
	_brd=$(grep '/brd\.ko$' /lib/modules/vmtest.order) || die "brd not in the guest's modules"
	rmmod brd
	insmod /lib/modules/$_brd rd_nr=1 rd_size=$((${GV_RD_MB:-512} * 1024))
	hostrun mkfs.xfs -q -f /dev/ram0 >/dev/null
	# Bricks cannot be tmpfs: the posix translator needs user.* xattrs.
	# Mounts made under /hostroot are seen inside the chroot; /tmp there is
	# a bind of the guest's /tmp, so mount on the /hostroot side.
	mkdir -p $GV_BRICKS $GV_INNER
	mount -t xfs /dev/ram0 /hostroot$GV_BRICKS
	mkdir -p /hostroot$GV_BRICKS/b1 /hostroot$GV_BRICKS/b2 /hostroot$GV_BRICKS/b3
	# glusterd's state, logs and pid files must be writable; seed its state
	# with the package's option groups.
	cp -a /hostroot/var/lib/glusterd/groups /tmp/gv-groups
	mount -t tmpfs tmpfs /hostroot/var/lib/glusterd
	cp -a /tmp/gv-groups /hostroot/var/lib/glusterd/groups
	mount -t tmpfs tmpfs /hostroot/var/log
	mkdir -p /hostroot/var/log/glusterfs
	mount -t tmpfs tmpfs /hostroot/var/lib/misc
	# glusterd runs the Python geo-replication helper ~15 times at start
	# (minutes under TCG). Geo-replication is unused: a stub answers.
	_gsyncd=$(ls /hostroot/usr/lib/*/glusterfs/gsyncd)
	printf '#!/bin/sh\necho "gsyncd.py 10.3"\nexit 0\n' > /tmp/gv-gsyncd
	chmod 755 /tmp/gv-gsyncd
	mount --bind /tmp/gv-gsyncd $_gsyncd
	hostrun glusterd
	_n=0
	until hostrun gluster --mode=script pool list >/dev/null 2>&1; do
		_n=$((_n + 1)); [ $_n -lt 600 ] || die "glusterd did not answer"
		sleep 0.5
	done
	hostrun gluster --mode=script volume create gv replica 3 \
		$GV_HOST:$GV_BRICKS/b1 $GV_HOST:$GV_BRICKS/b2 $GV_HOST:$GV_BRICKS/b3 force
	# A dead brick is noticed at once (its socket closes); a hung one after
	# ping-timeout (default 42 s).
	hostrun gluster --mode=script volume set gv network.ping-timeout 5
	hostrun gluster --mode=script volume start gv
	gv_mount $GV_INNER >/dev/null
	_t1=$(cut -d' ' -f1 /proc/uptime)
	echo "gluster: volume gv up at $GV in $(awk "BEGIN{print $_t1-$_t0}")s" \
		"(guest uptime $_t1 s)"
}

# gv_mount DIR: mount gv at DIR (inside the chroot) with the FUSE client.
gv_mount() {
	mkdir -p "$1"
	_pid=$GV_CLIENT_PID
	[ "$1" = $GV_INNER ] || _pid=/run/gv-client-$(basename "$1").pid
	hostrun glusterfs --volfile-server=$GV_HOST --volfile-id=gv \
		--pid-file=$_pid "$1"
	_n=0
	until grep -q " /hostroot$1 fuse.glusterfs" /proc/mounts && [ -w "/hostroot$1" ]; do
		_n=$((_n + 1)); [ $_n -lt 600 ] || die "gv did not mount at $1"
		sleep 0.2
	done
	echo "/hostroot$1"
}

gv_client_kill() { kill -9 "$(cat $GV_CLIENT_PID)"; }

# gv_brick_pid N: the pid of brick N's glusterfsd.
gv_brick_pid() {
	hostrun gluster --mode=script volume status gv $GV_HOST:$GV_BRICKS/b$1 |
		awk -v b="$GV_BRICKS/b$1" '$0 ~ b { print $NF }'
}

# gv_heal_pending: entries the self-heal daemon still has to heal.
gv_heal_pending() {
	hostrun gluster --mode=script volume heal gv info |
		awk '/^Number of entries:/ { n += $NF } END { print n + 0 }'
}
