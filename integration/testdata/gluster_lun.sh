# SPDX-License-Identifier: Apache-2.0
# TestGluster's guest scenario (after lunbridgeLib and gluster.sh): LUNs
# whose backing files live on a replica-3 GlusterFS volume, and one on a
# FUSE file system without fallocate (loopfs -no-fallocate). Each check
# c_NAME runs with errexit in a subshell; "NAME ok|FAIL" goes to
# /mnt/host/checks and its log to /mnt/host/check-NAME.log, so the host
# reports every check on its own. Measured durations go to
# /mnt/host/times ("KEY SECONDS").

uptime_s() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk "BEGIN{printf \"%.1f\", $(uptime_s) - $1}"; }

# proc_gone PID: the process has exited (gone, or a zombie not yet reaped).
proc_gone() { [ "$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null)" = Z ] || [ ! -e /proc/$1 ]; }

SIZE=32M
ARGS="export --cmd-timeout 10s --size $SIZE --name gv0 --name local --name nofa $GV/disk.img /tmp/local.img /tmp/nofa/disk.img"
MiB=1048576
dd if=/dev/urandom of=/tmp/pat bs=1M count=16 2>/dev/null
tr '\0' '\377' < /dev/zero | head -c $MiB > /tmp/ff

_t=$(uptime_s)
gluster_up
record gluster_up "$(elapsed $_t)"
mkdir -p /tmp/nofa-under /tmp/nofa
/mnt/host/loopfs -no-fallocate /tmp/nofa-under /tmp/nofa > /tmp/loopfs.out 2>&1 &
until_true 60 grep -q mounted /tmp/loopfs.out || die "loopfs did not mount"
lb_start /tmp/lb $ARGS
DEV=$(lb_dev /tmp/lb gv0)
LDEV=$(lb_dev /tmp/lb local)
NDEV=$(lb_dev /tmp/lb nofa)
[ -b "$DEV" ] && [ -b "$LDEV" ] && [ -b "$NDEV" ] || die "missing block devices"
grep 'msg="zeroing method"' /tmp/lb.err > /mnt/host/zeroing.txt || true

# data: both ways between the disk and the file on the volume, and on
# every brick after SYNCHRONIZE CACHE (conv=fsync).
c_data() {
	_t=$(uptime_s)
	dd if=/tmp/pat of=$DEV bs=1M oflag=direct conv=fsync
	record write_16MiB_disk "$(elapsed $_t)"
	_t=$(uptime_s)
	dd if=$DEV of=/tmp/back bs=1M count=16 iflag=direct
	record read_16MiB_disk "$(elapsed $_t)"
	cmp /tmp/pat /tmp/back
	dd if=$GV/disk.img bs=1M count=16 2>/dev/null | cmp /tmp/pat -
	for b in 1 2 3; do
		dd if=/hostroot$GV_BRICKS/b$b/disk.img bs=1M count=16 2>/dev/null | cmp /tmp/pat - ||
			{ echo "brick $b differs"; return 1; }
	done
	# The other way: written into the file on the volume, read through
	# the disk.
	dd if=/dev/urandom of=/tmp/pat2 bs=1M count=4 2>/dev/null
	dd if=/tmp/pat2 of=$GV/disk.img bs=1M seek=24 conv=notrunc,fsync
	dd if=$DEV bs=1M skip=24 count=4 iflag=direct 2>/dev/null | cmp /tmp/pat2 -
}

# zero_case DEV FILE... -- LBA N CMD...: fill N blocks at LBA with 0xff,
# run "hostrun CMD... DEV", then the range must read zeros through DEV
# and in every FILE.
zero_case() {
	_dev=$1; shift
	_files=
	while [ "$1" != -- ]; do _files="$_files $1"; shift; done
	shift
	_lba=$1 _n=$2; shift 2
	head -c $((_n * 512)) /tmp/ff > /tmp/ffn
	dd if=/tmp/ffn of=$_dev bs=512 seek=$_lba oflag=direct conv=fsync 2>/dev/null
	dd if=$_dev bs=512 skip=$_lba count=$_n iflag=direct 2>/dev/null | cmp -s /tmp/ffn - ||
		{ echo "$*: the 0xff fill did not take"; return 1; }
	hostrun "$@" $_dev
	hostrun sg_sync $_dev
	head -c $((_n * 512)) /dev/zero > /tmp/z
	dd if=$_dev bs=512 skip=$_lba count=$_n iflag=direct 2>/dev/null | cmp /tmp/z - ||
		{ echo "$*: the disk reads non-zero bytes"; return 1; }
	for f in $_files; do
		dd if=$f bs=512 skip=$_lba count=$_n 2>/dev/null | cmp /tmp/z - ||
			{ echo "$*: $f holds non-zero bytes"; return 1; }
	done
	echo "zeroed: $* on $_dev"
}

# zero_all DEV FILE...: every zeroing command on its own range.
zero_all() {
	_d=$1; shift
	zero_case $_d "$@" -- 1024 256 sg_write_same --unmap --lba=1024 --num=256
	zero_case $_d "$@" -- 2048 256 sg_write_same --lba=2048 --num=256
	zero_case $_d "$@" -- 3072 256 sg_write_same --16 --unmap --lba=3072 --num=256
	zero_case $_d "$@" -- 4096 256 sg_write_same --16 --lba=4096 --num=256
	zero_case $_d "$@" -- 5120 256 sg_unmap --lba=5120 --num=256
	zero_case $_d "$@" -- 6144 256 blkdiscard -z -o $((6144 * 512)) -l $((256 * 512))
	zero_case $_d "$@" -- 7168 256 blkdiscard -o $((7168 * 512)) -l $((256 * 512))
}

c_zero() {
	zero_all $DEV $GV/disk.img /hostroot$GV_BRICKS/b1/disk.img \
		/hostroot$GV_BRICKS/b2/disk.img /hostroot$GV_BRICKS/b3/disk.img
}

c_zero_nofallocate() { zero_all $NDEV /tmp/nofa-under/disk.img; }

heal_done() { [ "$(gv_heal_pending)" = 0 ]; }

# brick: brick 2 killed with -9 under an O_DIRECT writer; the writer ends
# without an error, the data is right; the brick back, it is healed.
c_brick() {
	dd if=/dev/urandom of=/tmp/bpat bs=1M count=16 2>/dev/null
	dd if=/tmp/bpat of=$DEV bs=64k oflag=direct conv=fsync &
	_w=$!
	sleep 1
	kill -0 $_w || { echo "the writer finished before the brick was killed"; return 1; }
	_p=$(gv_brick_pid 2)
	kill -9 $_p
	echo "killed brick 2 (pid $_p) under the writer"
	wait $_w
	dd if=$DEV bs=1M count=16 iflag=direct 2>/dev/null | cmp /tmp/bpat -
	_t=$(uptime_s)
	hostrun gluster --mode=script volume start gv force
	hostrun gluster --mode=script volume heal gv || true
	until_true 300 heal_done ||
		{ echo "heal still pending"; return 1; }
	record heal "$(elapsed $_t)"
	dd if=/hostroot$GV_BRICKS/b2/disk.img bs=1M count=16 2>/dev/null | cmp /tmp/bpat - ||
		{ echo "brick 2 not healed"; return 1; }
}

# gone: the FUSE client killed under a writer: the writer fails within
# --cmd-timeout with NOT READY, lunbridge stays up and serves the other
# LUN, the view says failed with the reason; a new mount and one
# "echo online > state" bring the LUN back.
c_gone() {
	( while dd if=/tmp/pat of=$DEV bs=64k oflag=direct 2>/dev/null; do :; done ) &
	_w=$!
	sleep 1
	_t=$(uptime_s)
	gv_client_kill
	until_true 30 sh -c "! kill -0 $_w 2>/dev/null" || { echo "the writer did not fail"; return 1; }
	_s=$(elapsed $_t)
	record gone_writer_failed "$_s"
	awk "BEGIN{exit !($_s < 10)}" || { echo "the writer failed after $_s s, not within --cmd-timeout 10s"; return 1; }
	kill -0 $LB_PID
	[ "$(cat /run/lunbridge/gv0/state)" = failed ]
	grep '^reason backing store lost' /run/lunbridge/gv0/info
	dmesg | grep -i 'manual intervention required' | tail -n 2
	dmesg | grep -qi 'manual intervention required'
	dd if=/tmp/pat of=$LDEV bs=1M count=4 oflag=direct conv=fsync
	dd if=$LDEV bs=1M count=4 iflag=direct 2>/dev/null | cmp - /tmp/pat -n 4194304
	umount -l $GV
	gv_mount $GV_INNER
	echo online > /run/lunbridge/gv0/state
	[ "$(cat /run/lunbridge/gv0/state)" = online ]
	grep 'backing file reopened' /tmp/lb.err
	dd if=/tmp/pat of=$DEV bs=1M count=8 oflag=direct conv=fsync
	dd if=$DEV bs=1M count=8 iflag=direct 2>/dev/null | cmp - /tmp/pat -n 8388608
	dd if=$GV/disk.img bs=1M count=8 2>/dev/null | cmp - /tmp/pat -n 8388608
}

# durable: a write acknowledged after SYNCHRONIZE CACHE is on the bricks
# after kill -9 of lunbridge: read through a fresh mount.
c_durable() {
	dd if=/dev/urandom of=/tmp/dpat bs=1M count=4 2>/dev/null
	dd if=/tmp/dpat of=$DEV bs=1M seek=20 oflag=direct
	hostrun sg_sync $DEV
	kill -9 $LB_PID
	until_true 10 sh -c "! kill -0 $LB_PID 2>/dev/null"
	_m=$(gv_mount /tmp/gv-fresh)
	dd if=$_m/disk.img bs=1M skip=20 count=4 2>/dev/null | cmp /tmp/dpat -
	hostrun umount /tmp/gv-fresh
}

# hang: the FUSE client stopped (SIGSTOP) under a writer: the LUN shows
# stalled with the reason; SIGTERM shuts lunbridge down cleanly although
# a worker is stuck in the file system; then the client resumes.
c_hang() {
	lb_start /tmp/lb2 $ARGS
	DEV=$(lb_dev /tmp/lb2 gv0)
	_c=$(cat $GV_CLIENT_PID)
	kill -STOP $_c
	dd if=/tmp/pat of=$DEV bs=1M count=4 oflag=direct 2>/dev/null &
	_w=$!
	until_true 60 sh -c '[ "$(cat /run/lunbridge/gv0/state)" = stalled ]' ||
		{ kill -CONT $_c; echo "never stalled"; return 1; }
	grep '^reason a command has been in the backing store' /run/lunbridge/gv0/info
	_t=$(uptime_s)
	_rc=0
	kill -TERM $LB_PID
	# The daemon's part of the shutdown: the FUSE view unmounted and the
	# LUNs unexported.
	until_true 120 sh -c "! grep -q ' /run/lunbridge ' /proc/mounts && [ -z \"\$(ls -d $CFG/loopback/*/tpgt_1/lun/lun_* 2>/dev/null)\" ]" ||
		{ echo "not unexported 120 s after SIGTERM"; _rc=1; }
	record shutdown_hung_unexported "$(elapsed $_t)"
	# Past the ring's drain timeout and the workers' grace period.
	until_true 60 grep -q 'workers still blocked in the backing store' /tmp/lb2.err ||
		echo "Serve did not give up on its stuck workers"
	record shutdown_hung_serve_returned "$(elapsed $_t)"
	# Whether the process can end before the client resumes depends on
	# where its stuck threads wait: a FUSE request is killable, a lock or
	# page writeback behind it is not. Recorded, not asserted.
	if until_true 10 proc_gone $LB_PID; then
		record shutdown_hung_exited_before_resume 1
	else
		record shutdown_hung_exited_before_resume 0
		echo "lunbridge still running $(elapsed $_t) s after SIGTERM; threads in the kernel:"
		for _k in /proc/$LB_PID/task/*; do
			_st=$(cat $_k/stack 2>/dev/null)
			[ -z "$_st" ] || printf '== %s %s\n%s\n' "$_k" "$(cut -d' ' -f3 $_k/stat)" "$_st"
		done | tee /mnt/host/hang-stacks.txt
	fi
	kill -CONT $_c
	wait $LB_PID || _rc=$?
	record shutdown_hung_exit "$(elapsed $_t)"
	wait $_w || true
	tail -n 20 /tmp/lb2.err
	# Exit status 1 is right when, and only when, the shutdown had to give
	# up on commands stuck in the file system: it says so.
	case $_rc in
	0) ;;
	1) grep -q 'in-flight commands not completed before the drain timeout' /tmp/lb2.err ||
		{ echo "lunbridge exited 1 for another reason"; return 1; } ;;
	*) echo "lunbridge exited $_rc"; return 1 ;;
	esac
	grep -q 'workers still blocked in the backing store after shutdown' /tmp/lb2.err
	! grep -q 'panic\|SIGSEGV\|fatal error' /tmp/lb2.err
	# The stuck workers returned after the process had decided to exit:
	# the device it kept for them is left for the next lunbridge to adopt.
	record shutdown_hung_backstores_left "$(ls -d $CFG/core/user_*/*/ 2>/dev/null | wc -l)"
	ls -d $CFG/core/user_*/*/ 2>/dev/null || true
}

check data
check zero
check zero_nofallocate
check brick
check gone
check durable
check hang
dmesg > /mnt/host/dmesg.txt
