# SPDX-License-Identifier: Apache-2.0
# TestSnapshotsGluster's guest scenario (after lunbridgeLib and
# gluster.sh): a snapshot of a LUN whose backing file lives on the
# in-guest replica-3 GlusterFS volume, made by copy-before-write (the
# FUSE client cannot clone) while fio's random 4 KiB writes race the
# copy; the snapshot equals the image taken before and, exported
# read-only, reads it back through /dev/sdX. Check results go to
# /mnt/host/checks as in snapshots.sh.

V=/run/lunbridge
H=/mnt/host
MiB=1048576

dd if=/dev/urandom of=/tmp/A bs=1M count=32 2>/dev/null
gluster_up
lb_start /tmp/lb export --size 32M --name g $GV/g.img
GDEV=$(lb_dev /tmp/lb g)
[ -b "$GDEV" ] || die "no block device"

c_gluster() {
	dd if=/tmp/A of=$GDEV bs=1M oflag=direct conv=fsync 2>/dev/null
	echo "snapshot s rate=2M" > $V/g/ctl
	[ "$(cat $V/g/snapshots/s/method)" = copy ] || die "method $(cat $V/g/snapshots/s/method), want copy"
	record gluster_pause_us "$(cat $V/g/snapshots/s/pause_us)"
	hostrun fio --name=race --filename=$GDEV --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bs=4k --size=32M --runtime=4 --time_based --eta=never \
		--rate_iops=20 --randrepeat=0 --output=/tmp/fio.out &
	_fio=$!
	sleep 1
	_p=$(cat $V/g/snapshots/s/progress)
	echo "progress 1 s into fio: $_p"
	record gluster_progress_1s_into_fio "${_p%% *}"
	[ "$(snap_state g s)" = copying ] || die "the copy ended before the writes raced it"
	wait $_fio
	grep -E 'write:|IOPS' /tmp/fio.out | head -3
	until_true 300 not_copying g s || die "copy did not finish"
	[ "$(snap_state g s)" = ready ] || die "state $(snap_state g s)"
	cmp /tmp/A $GV/g.img@s
	dd if=$GDEV bs=1M count=32 iflag=direct 2>/dev/null | cmp $GV/g.img -
	if cmp -s /tmp/A $GV/g.img; then die "fio changed nothing"; fi
	echo "export gs $GV/g.img@s read-only=1" > $V/luns
	dd if=$(lun_dev gs) bs=1M count=32 iflag=direct 2>/dev/null | cmp /tmp/A -
	echo "remove gs" > $V/luns
	echo "delete-snapshot s" > $V/g/ctl
	[ ! -e $GV/g.img@s ] || die "file left after delete"
}

check gluster
lb_stop
