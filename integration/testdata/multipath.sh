# SPDX-License-Identifier: Apache-2.0
# Guest side of TestMultipath (multipath_test.go): two lunbridge gateways
# of one ALUA group export one file, each its own iSCSI target on its own
# portal (127.0.0.1:3260 and :3261); open-iscsi in this guest logs in to
# both, multipathd (Debian's multipath-tools, through hostrun) builds one
# /dev/mapper device from the two paths with the multipath.conf of
# docs/scale-out.md, and fio with crc32c verification writes through it
# while the owner fails over (kill9: killed with -9; sigterm: stopped
# with SIGTERM, a planned handover). The initiator side is the library
# multipath_initiator.sh, shared with TestMultipathGluster. $INIT, $IQN1,
# $IQN2, $SIZE, $FIO_SIZE and
# $SCENARIOS come from the test. Results go to /mnt/host/results: one
# line per scenario, "NAME fio_rc verify_errors io_errors max_gap_ms
# target_errors", the last the kernel log lines of the run that report a
# target error (which dm-multipath does not retry on another path).

ip link set lo up
mkdir -p /tmp/shared

# start_gw N OUT: start gateway N (1 or 2) with its output in OUT.*;
# GWn is its pid, LOGn its log.
start_gw() {
	case $1 in
	1) mp_gateway "$2" 1 2 "$IQN1" 3260 /tmp/shared/lun.img; GW1=$LB_PID; LOG1=$2.err ;;
	2) mp_gateway "$2" 2 1 "$IQN2" 3261 /tmp/shared/lun.img; GW2=$LB_PID; LOG2=$2.err ;;
	esac
}
# OWNER is the gateway that owns the LUN, STANDBY the other; a scenario
# that moves the LUN swaps them.
start_gw 1 /tmp/gw1
wait_log $LOG1 'lease: owner'
start_gw 2 /tmp/gw2
OWNER=1 STANDBY=2

mp_initiator "3260:$IQN1" "3261:$IQN2"
show_paths start
signal mapped

# failover_tgt NAME ACTION: the library's failover, with the kernel log
# lines of the run that report a target error counted at the end of its
# result line.
failover_tgt() {
	_t0=$(dmesg | grep -cE "$TARGET_ERR" || true)
	failover "$1" "$2"
	_tgt=$(( $(dmesg | grep -cE "$TARGET_ERR" || true) - _t0 ))
	dmesg | grep -E "$TARGET_ERR" | tail -n "$_tgt" || true
	awk -v t="$_tgt" 'NR > 1 { print prev } { prev = $0 } END { print prev " " t }' \
		/mnt/host/results > /tmp/results && cat /tmp/results > /mnt/host/results
}
# The kernel's words for a command failed by the target rather than the
# path: "critical target error" (BLK_STS_TARGET) and the sense keys that
# map to it.
TARGET_ERR='critical target error|Sense Key : (Data Protect|Illegal Request)'
# now_ms: milliseconds since boot (busybox date has no %N).
now_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
pid_of() { eval echo "\$GW$1"; }
log_of() { eval echo "\$LOG$1"; }

# moved NAME: the standby took the LUN over; restart the old owner (it
# rejoins as standby) and wait for a healthy map.
moved() {
	wait_log "$(log_of $STANDBY)" 'lease: owner'
	_o=$OWNER OWNER=$STANDBY STANDBY=$_o
	start_gw $STANDBY /tmp/gw$STANDBY-$1
	wait_healthy
	if grep -q 'lease: owner' "$(log_of $STANDBY)"; then
		die "the restarted gateway $STANDBY took the LUN"
	fi
	show_paths rejoined-$1
}

for s in $SCENARIOS; do
	case $s in
	kill9)
		failover_tgt kill9 'P=$(pid_of $OWNER); kill -9 $P; wait $P 2>/dev/null || true'
		moved kill9
		;;
	sigterm)
		# A planned handover: the owner stops with SIGTERM while fio
		# writes; it must exit 0, and fio must see no error.
		failover_tgt sigterm 'P=$(pid_of $OWNER); kill -TERM $P; t0=$(now_ms); src=0; wait $P || src=$?; echo "gateway $OWNER stopped in $(( $(now_ms) - t0 )) ms, exit $src"; [ $src = 0 ] || { cat "$(log_of $OWNER)"; die "gateway $OWNER exited $src on SIGTERM"; }'
		moved sigterm
		;;
	*) die "unknown scenario $s" ;;
	esac
done

mp_initiator_stop
kill -TERM $GW1 $GW2
wait $GW1 || true
wait $GW2 || true
tail -100 /tmp/multipathd.log
grep -h 'lease:' /tmp/gw*.err
