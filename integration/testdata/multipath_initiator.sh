# SPDX-License-Identifier: Apache-2.0
# Guest library: the Linux multipath initiator over lunbridge gateways, as
# functions (sourced by the multipath scenarios after lib.sh). open-iscsi
# in this guest logs in to each gateway's portal, multipathd (Debian's
# multipath-tools, through hostrun) builds one /dev/mapper device from the
# paths with /mnt/host/multipath.conf (multipathConf in multipath_test.go),
# and fio with crc32c verification writes through it while a scenario
# moves the LUN. $INIT (the initiator IQN), $SIZE and $FIO_SIZE come from
# the test.
#
#   (wait_log FILE TEXT [SECONDS] is lib.sh's)
#   mp_gateway OUT GROUP PEER IQN PORT FILE
#                                 start a gateway of group GROUP for FILE,
#                                 its target on 127.0.0.1:PORT; sets LB_PID
#   mp_initiator PORT:IQN...      start iscsid, log in to each portal, run
#                                 udevd and multipathd; sets MAP and DEV
#                                 once the map is healthy
#   wait_healthy                  both paths up (one active, one ghost)
#   show_paths NAME               multipathd's view, saved for the host
#   failover NAME ACTION          fio through the map, ACTION once it writes;
#                                 appends "NAME fio_rc verify_errors
#                                 io_errors max_gap_ms" to
#                                 /mnt/host/results, and leaves fio's
#                                 completion log in /mnt/host/clat-NAME.log

mp_gateway() {
	lb_start "$1" export --fabric iscsi --iqn "$4" --portal "127.0.0.1:$5" --name "gw$2" \
		--alua-identity shared --initiator "$INIT" --alua-group "$2" --alua-peer "$3" \
		--size "$SIZE" --mount "/run/lb$2" --cmd-timeout 5s "$6"
}

mp_initiator() {
	mkdir -p /etc/target/pr
	# A writable copy of the host's /etc for open-iscsi (node database,
	# initiator name) and multipath-tools (multipath.conf, wwids,
	# bindings).
	cp -a /hostroot/etc /tmp/etc
	mount --bind /tmp/etc /hostroot/etc
	sed 's|^iscsid.startup.*|iscsid.startup = /bin/true|' /hostroot/etc/iscsi/iscsid.conf > /tmp/etc/iscsi/iscsid.conf
	# Fail a dead path's commands fast: the session's replacement timeout.
	sed -i 's|^node.session.timeo.replacement_timeout.*|node.session.timeo.replacement_timeout = 5|' /tmp/etc/iscsi/iscsid.conf
	echo "InitiatorName=$INIT" > /tmp/etc/iscsi/initiatorname.iscsi
	mkdir -p /tmp/etc/multipath /run/lock/iscsi
	cp /mnt/host/multipath.conf /tmp/etc/multipath.conf
	hostrun iscsid
	_n=0
	until [ -e /run/iscsid.pid ]; do
		_n=$((_n + 1)); [ $_n -lt 100 ] || die "iscsid did not start"
		sleep 0.1
	done
	for _p in "$@"; do
		hostrun iscsiadm -m discovery -t sendtargets -p 127.0.0.1:${_p%%:*}
		hostrun iscsiadm -m node -T "${_p#*:}" -p 127.0.0.1:${_p%%:*} --login
	done
	_n=0
	until [ "$(ls -d /sys/class/iscsi_session/session*/device/target*/*/block/* 2>/dev/null | wc -l)" = $# ]; do
		_n=$((_n + 1)); [ $_n -lt 300 ] || die "no $# disks after login"
		sleep 0.1
	done
	for _b in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
		_d=${_b##*/}
		echo "path $_d: $(cat /sys/block/$_d/device/vendor) dh_state=$(cat /sys/block/$_d/device/dh_state)" \
			"access_state=$(cat /sys/block/$_d/device/access_state 2>/dev/null)"
	done
	# multipathd takes only devices that udev has initialized (its udev
	# database entry): run the host's udevd in the guest, as a system
	# would, and replay the block devices' add events. udevadm refuses to
	# act in a chroot unless told (SYSTEMD_IGNORE_CHROOT).
	export SYSTEMD_IGNORE_CHROOT=1
	hostrun /lib/systemd/systemd-udevd --daemon
	for _u in /sys/block/sd*/uevent; do echo add > "$_u"; done
	hostrun udevadm settle --timeout=60 || true
	# multipathd in the foreground.
	hostrun multipathd -d -s -v3 > /tmp/multipathd.log 2>&1 &
	MPD=$!
	_n=0
	until MAP=$(hostrun dmsetup ls --target multipath 2>/dev/null | awk 'NR==1 && $1 != "No" {print $1}') && [ -n "$MAP" ]; do
		_n=$((_n + 1))
		[ $_n -lt 150 ] || { cat /tmp/multipathd.log; die "multipathd built no map"; }
		sleep 0.2
	done
	wait_healthy
	# The map's node: /dev/dm-N (devtmpfs); the /dev/mapper/NAME link is
	# udev's and may come later.
	DEV=
	for _d in /sys/block/dm-*; do
		[ "$(cat $_d/dm/name)" = "$MAP" ] && DEV=/dev/${_d##*/}
	done
	[ -b "$DEV" ] || die "map $MAP: no block device ($DEV)"
	echo "map $MAP is $DEV"
}

# mp_initiator_stop: multipathd, the map and the sessions go.
mp_initiator_stop() {
	kill -TERM $MPD 2>/dev/null || true
	hostrun multipath -F || true
	hostrun iscsiadm -m node --logoutall=all || true
}

show_paths() {
	hostrun multipathd show topology | tee /mnt/host/topology-$1
	hostrun multipathd show paths format "%d %t %T %p %s" | tee /mnt/host/paths-$1
}

wait_healthy() {
	_n=0
	until [ "$(hostrun multipathd show paths raw format '%T' | grep -cE 'ready|ghost')" = 2 ]; do
		_n=$((_n + 1))
		[ $_n -lt 600 ] || { show_paths unhealthy; tail -50 /tmp/multipathd.log; die "map not healthy"; }
		sleep 0.2
	done
}

# fio_run NAME [SIZE]: write SIZE (default $FIO_SIZE) through the map with
# crc32c verification, the completions logged (unix epoch ms) to find the
# failover gap.
fio_run() {
	hostrun fio --name="$1" --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=4 \
		--rw=write --bs=64k --size="${2:-$FIO_SIZE}" --rate=4m \
		--verify=crc32c --verify_fatal=1 --do_verify=1 \
		--write_lat_log=/tmp/lat-$1 --log_unix_epoch=1 --output-format=normal \
		> /tmp/fio-$1.out 2>&1
}

# fio_result NAME RC: the result line of fio_run NAME that exited RC.
fio_result() {
	cat /tmp/fio-$1.out
	_verr=$(grep -ci 'verify: bad\|bad magic\|crc32c: verify failed\|verify failed' /tmp/fio-$1.out || true)
	_ioerr=$(grep -c 'error=' /tmp/fio-$1.out || true)
	# The largest gap between two write completions (ddir 1) in ms, in
	# time order; the log is kept for the host (clat-NAME.log).
	cp /tmp/lat-$1_clat.1.log /mnt/host/clat-$1.log 2>/dev/null || true
	_gap=$(awk -F', ' '$3 == 1 { print $1 }' /tmp/lat-$1_clat.1.log 2>/dev/null | sort -n |
		awk '{ if (prev && $1 - prev > max) max = $1 - prev; prev = $1 } END { print max + 0 }' || echo -1)
	echo "$1 $2 $_verr $_ioerr $_gap" | tee -a /mnt/host/results
}

# writes_done: write requests completed through the map so far.
writes_done() { awk '{ print $5 }' /sys/block/${DEV#/dev/}/stat; }

failover() {
	_w0=$(writes_done)
	fio_run "$1" &
	_fio=$!
	# ACTION once fio is writing (32 writes, 2 MiB, through the map): fio
	# takes seconds to start under TCG, and an ACTION before its first
	# write measures no failover.
	_n=0
	until [ $(($(writes_done) - _w0)) -ge 32 ]; do
		_n=$((_n + 1)); [ $_n -lt 600 ] || die "fio wrote nothing through $DEV in 60 s"
		sleep 0.1
	done
	eval "$2"
	# set -e: a failing fio must be reported, not end the script.
	_rc=0
	wait $_fio || _rc=$?
	fio_result "$1" $_rc
	show_paths "$1"
}
