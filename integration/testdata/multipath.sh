# SPDX-License-Identifier: Apache-2.0
# Guest side of TestMultipath (multipath_test.go): two lunbridge gateways
# of one ALUA group export one file, each its own iSCSI target on its own
# portal (127.0.0.1:3260 and :3261); open-iscsi in this guest logs in to
# both, multipathd (Debian's multipath-tools, through hostrun) builds one
# /dev/mapper device from the two paths with the multipath.conf of
# docs/scale-out.md, and fio with crc32c verification writes through it
# while the owner fails over (kill9: killed with -9; sigterm: stopped
# with SIGTERM, a planned handover). $INIT, $IQN1, $IQN2, $SIZE and
# $SCENARIOS come from the test. Results go to /mnt/host/results: one
# line per scenario, "NAME fio_rc verify_errors io_errors max_gap_ms
# target_errors", the last the kernel log lines of the run that report a
# target error (which dm-multipath does not retry on another path).

ip link set lo up
mkdir -p /tmp/shared /etc/target/pr

# wait_log FILE TEXT [SECONDS]: wait until FILE contains TEXT.
wait_log() {
	_n=$(( ${3:-60} * 10 ))
	until grep -q "$2" "$1"; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || { cat "$1"; die "no \"$2\" in $1"; }
		sleep 0.1
	done
}

# gateway OUT GROUP PEER IQN PORT: one gateway, its target on 127.0.0.1:PORT.
gateway() {
	lb_start "$1" export --fabric iscsi --iqn "$4" --portal "127.0.0.1:$5" --name "gw$2" \
		--alua-identity shared --initiator "$INIT" --alua-group "$2" --alua-peer "$3" \
		--size "$SIZE" --mount "/run/lb$2" --cmd-timeout 5s /tmp/shared/lun.img
}

# A writable copy of the host's /etc for open-iscsi (node database,
# initiator name) and multipath-tools (multipath.conf, wwids, bindings).
cp -a /hostroot/etc /tmp/etc
mount --bind /tmp/etc /hostroot/etc
sed 's|^iscsid.startup.*|iscsid.startup = /bin/true|' /hostroot/etc/iscsi/iscsid.conf > /tmp/etc/iscsi/iscsid.conf
# Fail a dead path's commands fast: the session's replacement timeout.
sed -i 's|^node.session.timeo.replacement_timeout.*|node.session.timeo.replacement_timeout = 5|' /tmp/etc/iscsi/iscsid.conf
echo "InitiatorName=$INIT" > /tmp/etc/iscsi/initiatorname.iscsi
mkdir -p /tmp/etc/multipath /run/lock/iscsi
cp /mnt/host/multipath.conf /tmp/etc/multipath.conf

# start_gw N OUT: start gateway N (1 or 2) with its output in OUT.*;
# GWn is its pid, LOGn its log.
start_gw() {
	case $1 in
	1) gateway "$2" 1 2 "$IQN1" 3260; GW1=$LB_PID; LOG1=$2.err ;;
	2) gateway "$2" 2 1 "$IQN2" 3261; GW2=$LB_PID; LOG2=$2.err ;;
	esac
}
# OWNER is the gateway that owns the LUN, STANDBY the other; a scenario
# that moves the LUN swaps them.
start_gw 1 /tmp/gw1
wait_log $LOG1 'lease: owner'
start_gw 2 /tmp/gw2
OWNER=1 STANDBY=2

hostrun iscsid
n=0
until [ -e /run/iscsid.pid ]; do
	n=$((n + 1)); [ $n -lt 100 ] || die "iscsid did not start"
	sleep 0.1
done
for p in 3260:$IQN1 3261:$IQN2; do
	hostrun iscsiadm -m discovery -t sendtargets -p 127.0.0.1:${p%%:*}
	hostrun iscsiadm -m node -T "${p#*:}" -p 127.0.0.1:${p%%:*} --login
done
n=0
until [ "$(ls -d /sys/class/iscsi_session/session*/device/target*/*/block/* 2>/dev/null | wc -l)" = 2 ]; do
	n=$((n + 1)); [ $n -lt 300 ] || die "no two disks after login"
	sleep 0.1
done
for b in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
	d=${b##*/}
	echo "path $d: $(cat /sys/block/$d/device/vendor) dh_state=$(cat /sys/block/$d/device/dh_state) access_state=$(cat /sys/block/$d/device/access_state 2>/dev/null)"
done

# multipathd takes only devices that udev has initialized (its udev
# database entry): run the host's udevd in the guest, as a system would,
# and replay the block devices' add events.
# udevadm refuses to act in a chroot unless told (SYSTEMD_IGNORE_CHROOT).
export SYSTEMD_IGNORE_CHROOT=1
hostrun /lib/systemd/systemd-udevd --daemon
for u in /sys/block/sd*/uevent; do echo add > "$u"; done
hostrun udevadm settle --timeout=60 || true
hostrun udevadm info /dev/sda | grep -E 'ID_SERIAL|ID_WWN|DM_MULTIPATH' || true
# multipathd in the foreground.
hostrun multipathd -d -s -v3 > /tmp/multipathd.log 2>&1 &
MPD=$!
n=0
until MAP=$(hostrun dmsetup ls --target multipath 2>/dev/null | awk 'NR==1 && $1 != "No" {print $1}') && [ -n "$MAP" ]; do
	n=$((n + 1))
	[ $n -lt 150 ] || { cat /tmp/multipathd.log; die "multipathd built no map"; }
	sleep 0.2
done
# show_paths NAME: what multipathd shows, saved for the host.
show_paths() {
	hostrun multipathd show topology | tee /mnt/host/topology-$1
	hostrun multipathd show paths format "%d %t %T %p %s" | tee /mnt/host/paths-$1
}
# wait_healthy: both paths up (one active, one ghost), map has 2 paths.
wait_healthy() {
	_n=0
	until [ "$(hostrun multipathd show paths raw format '%T' | grep -cE 'ready|ghost')" = 2 ]; do
		_n=$((_n + 1))
		[ $_n -lt 600 ] || { show_paths unhealthy; tail -50 /tmp/multipathd.log; die "map not healthy"; }
		sleep 0.2
	done
}
wait_healthy
# The map's node: /dev/dm-N (devtmpfs); the /dev/mapper/NAME link is
# udev's and may come later.
DEV=
for d in /sys/block/dm-*; do
	[ "$(cat $d/dm/name)" = "$MAP" ] && DEV=/dev/${d##*/}
done
[ -b "$DEV" ] || die "map $MAP: no block device ($DEV)"
echo "map $MAP is $DEV"
show_paths start
signal mapped

# fio_run NAME: write SIZE through the map with crc32c verification, the
# completions logged (unix epoch ms) to find the failover gap.
fio_run() {
	hostrun fio --name="$1" --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=4 \
		--rw=write --bs=64k --size="$FIO_SIZE" --rate=4m \
		--verify=crc32c --verify_fatal=1 --do_verify=1 \
		--write_lat_log=/tmp/lat-$1 --log_unix_epoch=1 --output-format=normal \
		> /tmp/fio-$1.out 2>&1
}

# failover NAME ACTION: fio through the map while ACTION moves the LUN.
failover() {
	tgt0=$(dmesg | grep -cE "$TARGET_ERR" || true)
	w0=$(awk '{print $5}' /sys/block/${DEV#/dev/}/stat)
	fio_run "$1" &
	FIO=$!
	# Act once fio is writing (2 MiB through the map, then 2 s more):
	# starting fio takes a while under TCG.
	_n=0
	until [ $(( $(awk '{print $5}' /sys/block/${DEV#/dev/}/stat) - w0 )) -ge 32 ]; do
		_n=$((_n + 1)); [ $_n -lt 600 ] || die "fio $1 wrote nothing"
		sleep 0.1
	done
	sleep 2
	eval "$2"
	# set -e: a failing fio must be reported, not end the script.
	rc=0
	wait $FIO || rc=$?
	cat /tmp/fio-$1.out
	verr=$(grep -ci 'verify: bad\|bad magic\|crc32c: verify failed\|verify failed' /tmp/fio-$1.out || true)
	ioerr=$(grep -c 'error=' /tmp/fio-$1.out || true)
	# The largest gap between two write completions (ddir 1) in ms.
	gap=$(awk -F', ' '$3 == 1 { if (prev && $1 - prev > max) max = $1 - prev; prev = $1 } END { print max + 0 }' /tmp/lat-$1_clat.1.log 2>/dev/null || echo -1)
	tgt=$(( $(dmesg | grep -cE "$TARGET_ERR" || true) - tgt0 ))
	dmesg | grep -E "$TARGET_ERR" | tail -n "$tgt" || true
	echo "$1 $rc $verr $ioerr $gap $tgt" | tee -a /mnt/host/results
	show_paths "$1"
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
		failover kill9 'P=$(pid_of $OWNER); kill -9 $P; wait $P 2>/dev/null || true'
		moved kill9
		;;
	sigterm)
		# A planned handover: the owner stops with SIGTERM while fio
		# writes; it must exit 0, and fio must see no error.
		failover sigterm 'P=$(pid_of $OWNER); kill -TERM $P; t0=$(now_ms); src=0; wait $P || src=$?; echo "gateway $OWNER stopped in $(( $(now_ms) - t0 )) ms, exit $src"; [ $src = 0 ] || { cat "$(log_of $OWNER)"; die "gateway $OWNER exited $src on SIGTERM"; }'
		moved sigterm
		;;
	*) die "unknown scenario $s" ;;
	esac
done

kill -TERM $MPD 2>/dev/null || true
hostrun multipath -F || true
hostrun iscsiadm -m node --logoutall=all || true
kill -TERM $GW1 $GW2
wait $GW1 || true
wait $GW2 || true
tail -100 /tmp/multipathd.log
grep -h 'lease:' /tmp/gw*.err
