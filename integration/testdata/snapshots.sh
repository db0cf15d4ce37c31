# SPDX-License-Identifier: Apache-2.0
# TestSnapshots' guest scenario (after lunbridgeLib): snapshots of live
# LUNs through the view's ctl, on XFS with reflink (a brd RAM disk) and
# on tmpfs (copy-before-write). Each check c_NAME runs with errexit in a
# subshell; "NAME ok|FAIL" goes to /mnt/host/checks and its log to
# /mnt/host/check-NAME.log. Measurements go to /mnt/host/times
# ("KEY VALUE").

V=/run/lunbridge
H=/mnt/host
MiB=1048576

# XFS with reflink on a 512 MiB brd RAM disk (brd allocates pages only
# as they are written; mkfs.xfs refuses less than 300 MiB).
_brd=$(grep '/brd\.ko$' /lib/modules/vmtest.order) || die "brd not in the guest's modules"
rmmod brd 2>/dev/null || true
insmod /lib/modules/$_brd rd_nr=1 rd_size=$((512 * 1024))
hostrun mkfs.xfs -q -f -m reflink=1 /dev/ram0 >/dev/null
mkdir -p /tmp/xfs
mount -t xfs /dev/ram0 /tmp/xfs
# A small tmpfs for the ENOSPC check.
mkdir -p /tmp/small
mount -t tmpfs -o size=80m tmpfs /tmp/small

dd if=/dev/urandom of=/tmp/A bs=1M count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/B bs=1M count=64 2>/dev/null
head -c $((32 * MiB)) /tmp/A > /tmp/A32

# The export command gives one size to all its files: x comes from the
# command line, the others through /luns.
lb_start /tmp/lb export --size 1G --name x /tmp/xfs/x.img
echo "export t /tmp/t.img size=64M" > $V/luns
echo "export e /tmp/small/e.img size=32M" > $V/luns
echo "export k /tmp/k.img size=32M" > $V/luns
XDEV=$(lb_dev /tmp/lb x)
TDEV=$(lun_dev t)
EDEV=$(lun_dev e)
KDEV=$(lun_dev k)
[ -b "$XDEV" ] && [ -b "$TDEV" ] && [ -b "$EDEV" ] && [ -b "$KDEV" ] || die "missing block devices"

# reflink: a 1 GiB LUN on XFS holding pattern A in its first 64 MiB;
# snapshot, overwrite with B: the snapshot holds A, the LUN B; the
# snapshot is ready at once, by reflink, and says how long the LUN's
# writes were held.
c_reflink() {
	dd if=/tmp/A of=$XDEV bs=1M oflag=direct conv=fsync 2>/dev/null
	_t0=$(cut -d' ' -f1 /proc/uptime)
	echo "snapshot a" > $V/x/ctl
	_t1=$(cut -d' ' -f1 /proc/uptime)
	record reflink_ctl_write_s "$(awk "BEGIN{print $_t1 - $_t0}")"
	ls -l $V/x/snapshots/a
	for f in state method progress created path pause_us; do echo "$f: $(cat $V/x/snapshots/a/$f)"; done
	[ "$(snap_state x a)" = ready ] || die "state $(snap_state x a), want ready"
	[ "$(cat $V/x/snapshots/a/method)" = reflink ] || die "method $(cat $V/x/snapshots/a/method), want reflink"
	[ "$(cat $V/x/snapshots/a/path)" = /tmp/xfs/x.img@a ] || die "path"
	[ "$(cat $V/x/snapshots/a/progress)" = "1073741824 / 1073741824" ] || die "progress $(cat $V/x/snapshots/a/progress)"
	record reflink_pause_us "$(cat $V/x/snapshots/a/pause_us)"
	dd if=/tmp/B of=$XDEV bs=1M oflag=direct conv=fsync 2>/dev/null
	head -c $((64 * MiB)) /tmp/xfs/x.img@a | cmp /tmp/A -
	dd if=$XDEV bs=1M count=64 iflag=direct 2>/dev/null | cmp /tmp/B -
	# Those 1 MiB WRITEs went through the LUN's io_uring (XFS is a
	# page-cache file system, and this kernel has io_uring): the backing
	# file holds B.
	if grep -q 'io_uring not available' /tmp/lb.out /tmp/lb.err; then die "no io_uring for x"; fi
	head -c $((64 * MiB)) /tmp/xfs/x.img | cmp /tmp/B -
	[ "$(stat -c %s /tmp/xfs/x.img@a)" = 1073741824 ] || die "snapshot size"
	# A second snapshot under the same name is refused and changes nothing.
	if echo "snapshot a" > $V/x/ctl; then die "a second snapshot a was accepted"; fi
	if echo "snapshot ../a" > $V/x/ctl; then die "snapshot ../a was accepted"; fi
	head -c $((64 * MiB)) /tmp/xfs/x.img@a | cmp /tmp/A -
}

# cow: a 64 MiB LUN on tmpfs holding A; snapshot with a slow copy
# (4 MiB/s), fio's random 4 KiB writes (paced, so that the copy is still
# running a second into them; then unpaced) race the copy; then the
# snapshot equals A (the image taken before) byte for byte and the LUN
# reads back what its backing file holds.
c_cow() {
	dd if=/tmp/A of=$TDEV bs=1M oflag=direct conv=fsync 2>/dev/null
	echo "snapshot b rate=4M" > $V/t/ctl
	[ "$(cat $V/t/snapshots/b/method)" = copy ] || die "method $(cat $V/t/snapshots/b/method), want copy"
	record cow_pause_us "$(cat $V/t/snapshots/b/pause_us)"
	hostrun fio --name=race --filename=$TDEV --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bs=4k --size=64M --runtime=4 --time_based --eta=never \
		--rate_iops=40 --randrepeat=0 --output=/tmp/fio.out &
	_fio=$!
	sleep 1
	_p=$(cat $V/t/snapshots/b/progress)
	echo "progress 1 s into fio: $_p"
	record cow_progress_1s_into_fio "${_p%% *}"
	[ "$(snap_state t b)" = copying ] || die "the copy ended before the writes raced it"
	wait $_fio
	grep -E 'write:|IOPS' /tmp/fio.out | head -3
	hostrun fio --name=storm --filename=$TDEV --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bs=4k --size=64M --runtime=2 --time_based --eta=never \
		--randrepeat=0 --output=/tmp/fio2.out
	grep -E 'write:|IOPS' /tmp/fio2.out | head -3
	until_true 120 not_copying t b || die "copy did not finish"
	[ "$(snap_state t b)" = ready ] || die "state $(snap_state t b)"
	cmp /tmp/A /tmp/t.img@b
	dd if=$TDEV bs=1M count=64 iflag=direct 2>/dev/null | cmp /tmp/t.img -
	if cmp -s /tmp/A /tmp/t.img; then die "fio changed nothing"; fi
	$LB snapshot --list t | tee /tmp/list
	grep -q '^b  *ready  *copy ' /tmp/list
}

# roexport: the snapshots exported read-only as LUNs read back A through
# /dev/sdX and refuse writes.
c_roexport() {
	echo "export xa /tmp/xfs/x.img@a read-only=1" > $V/luns
	_d=$(lun_dev xa)
	[ -b "$_d" ] || die "xa has no block device"
	dd if=$_d bs=1M count=64 iflag=direct 2>/dev/null | cmp /tmp/A -
	if dd if=/tmp/B of=$_d bs=4k count=1 oflag=direct 2>/dev/null; then die "a write to the read-only snapshot succeeded"; fi
	echo "remove xa" > $V/luns
	echo "export tb /tmp/t.img@b read-only=1" > $V/luns
	_d=$(lun_dev tb)
	dd if=$_d bs=1M count=64 iflag=direct 2>/dev/null | cmp /tmp/A -
	echo "remove tb" > $V/luns
}

# delete: a snapshot deleted while copying goes, both files, and the LUN
# keeps serving; then the CLI makes and deletes one.
c_delete() {
	echo "snapshot c rate=1M" > $V/t/ctl
	[ "$(snap_state t c)" = copying ] || die "state $(snap_state t c), want copying"
	dd if=/tmp/B of=$TDEV bs=1M count=4 oflag=direct conv=fsync 2>/dev/null
	echo "delete-snapshot c" > $V/t/ctl
	[ ! -e /tmp/t.img@c ] && [ ! -e /tmp/t.img@c.state ] || die "files left after delete"
	[ ! -e $V/t/snapshots/c ] || die "view still lists c"
	head -c $((4 * MiB)) /tmp/B > /tmp/B4
	dd if=$TDEV bs=1M count=4 iflag=direct 2>/dev/null | cmp /tmp/B4 -
	$LB snapshot t d
	until_true 60 not_copying t d
	$LB snapshot --delete t d
	[ ! -e /tmp/t.img@d ] || die "CLI delete left the file"
}

# enospc: a copy that runs out of space fails with the reason and gives
# its space back; the LUN keeps working; a snapshot with no room for its
# copy is refused with ENOSPC and leaves nothing.
c_enospc() {
	dd if=/tmp/A32 of=$EDEV bs=1M oflag=direct conv=fsync 2>/dev/null
	echo "snapshot s rate=2M" > $V/e/ctl
	[ "$(snap_state e s)" = copying ] || die "state $(snap_state e s), want copying"
	# Leave ~8 MiB free of 80 while the copy needs 32.
	dd if=/dev/urandom of=/tmp/small/fill bs=1M count=40 2>/dev/null || true
	until_true 60 not_copying e s || die "copy did not end"
	_st=$(snap_state e s)
	echo "state: $_st"
	case "$_st" in "failed: "*"no space"*) ;; *) die "state $_st, want failed with no space" ;; esac
	[ "$(stat -c %s /tmp/small/e.img@s)" = 0 ] || die "the failed copy kept its space"
	dd if=/tmp/B of=$EDEV bs=1M count=8 oflag=direct conv=fsync 2>/dev/null
	head -c $((8 * MiB)) /tmp/B > /tmp/B8
	dd if=$EDEV bs=1M count=8 iflag=direct 2>/dev/null | cmp /tmp/B8 -
	rm /tmp/small/fill
	dd if=/dev/urandom of=/tmp/small/fill bs=1M count=44 2>/dev/null
	if echo "snapshot full" > $V/e/ctl 2>/tmp/full.err; then die "a snapshot with no room was accepted"; fi
	cat /tmp/full.err
	grep -qi "no space" /tmp/full.err
	[ ! -e /tmp/small/e.img@full ] && [ ! -e $V/e/snapshots/full ] || die "the refused snapshot left something"
	echo "delete-snapshot s" > $V/e/ctl
	rm /tmp/small/fill
}

# kill: lunbridge killed with -9 during a copy; the restarted daemon
# reports the snapshot failed, refuses to export it, deletes it, and the
# LUN holds its data.
c_kill() {
	dd if=/tmp/A32 of=$KDEV bs=1M oflag=direct conv=fsync 2>/dev/null
	echo "snapshot s rate=1M" > $V/k/ctl
	[ "$(snap_state k s)" = copying ] || die "state $(snap_state k s), want copying"
	kill -9 $LB_PID
	wait $LB_PID 2>/dev/null || true
	sleep 1
	# The same LUNs in the same order, so it adopts every device; the
	# files give the sizes.
	lb_start /tmp/lb2 export --name x --name t --name e --name k \
		/tmp/xfs/x.img /tmp/t.img /tmp/small/e.img /tmp/k.img
	echo $LB_PID > /tmp/lb.pid
	_st=$(snap_state k s)
	echo "after restart: $_st"
	case "$_st" in "failed: interrupted"*) ;; *) die "state $_st, want failed: interrupted" ;; esac
	if echo "export ks /tmp/k.img@s read-only=1" > $V/luns; then die "an interrupted snapshot was exported"; fi
	echo "delete-snapshot s" > $V/k/ctl
	[ ! -e /tmp/k.img@s ] && [ ! -e /tmp/k.img@s.state ] || die "files left after delete"
	dd if=$(lun_dev k) bs=1M count=32 iflag=direct 2>/dev/null | cmp /tmp/A32 -
}

echo $LB_PID > /tmp/lb.pid
for c in reflink cow roexport delete enospc kill; do check $c; done
# c_kill restarted lunbridge in its subshell: stop whichever runs now.
LB_PID=$(cat /tmp/lb.pid)
kill -TERM $LB_PID 2>/dev/null || true
until_true 60 sh -c "! kill -0 $LB_PID 2>/dev/null" || die "lunbridge did not stop"
grep -E 'snapshot' /tmp/lb.err /tmp/lb2.err > $H/snapshot-log.txt || true
