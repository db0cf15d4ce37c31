# SPDX-License-Identifier: Apache-2.0
# Guest side of TestMultipathGluster (multipath_gluster_test.go): two
# lunbridge gateways of one ALUA group serve one LUN file on the in-guest
# replica-3 GlusterFS volume (gluster.sh), each through its own FUSE
# client: gateway 1 (the owner) on $GV, gateway 2 on a second mount. The
# multipath initiator (multipath_initiator.sh) writes through the map with
# fio --verify while the owner's FUSE client is killed with -9: the owner
# daemon keeps running but its file and its lease sidecar answer ENOTCONN.
# Then the owner's mount is restored and the owner daemon restarted: it
# must rejoin as standby with the map healthy. $INIT, $IQN1, $IQN2, $SIZE
# and $FIO_SIZE come from the test. Results for the host:
#   results       "NAME fio_rc verify_errors io_errors max_gap_ms" for the
#                 failover (gluster) and a write after the rejoin (rejoin)
#   owner-alive   the owner daemon was still running after the failover
#   owner-info    its view's info file then; owner-log and peer-log the
#                 lease and gateway log lines of both gateways
#   owner-stop    the exit status of its SIGTERM (or "killed")
#   rejoin-info   the restarted gateway's info file once the map is healthy
#   kill-ms       when the client was killed (unix ms, as the logs' times)

gluster_up
DIR2=$(gv_mount /tmp/gv2)

mp_gateway /tmp/gw1 1 2 "$IQN1" 3260 "$GV/lun.img"
GW1=$LB_PID
wait_log /tmp/gw1.err 'lease: owner'
mp_gateway /tmp/gw2 2 1 "$IQN2" 3261 "$DIR2/lun.img"
GW2=$LB_PID
mp_initiator "3260:$IQN1" "3261:$IQN2"
show_paths start
signal mapped

# watch SECONDS: what the paths, the map and the gateways show, every
# 5 s while the failover runs, and the blocked tasks after 45 s: the
# console says where a failover that hangs is stuck.
watch() {
	echo 1 > /proc/sys/kernel/sysrq || true
	_i=0
	while [ $_i -lt $1 ]; do
		sleep 5
		_i=$((_i + 5))
		echo "--- failover +${_i}s"
		for _d in /sys/block/sd*; do
			echo "${_d##*/} $(cat $_d/device/state) $(cat $_d/device/access_state 2>/dev/null)" || true
		done
		hostrun dmsetup status || true
		grep -hE 'alua_state|^owner|^state' /run/lb1/gw1/info /run/lb2/gw2/info || true
		tail -n 3 /tmp/gw1.err /tmp/gw2.err || true
		if [ $_i = 45 ]; then
			cat /proc/$MPD/task/*/stack || true
			echo w > /proc/sysrq-trigger || true
			dmesg | tail -n 120 || true
		fi
	done
}

# The owner's FUSE client dies under fio; its daemon stays.
kill_owner_client() {
	hostrun date +%s%3N > /mnt/host/kill-ms
	gv_client_kill
	watch 60 &
	WATCH=$!
}
failover gluster kill_owner_client
kill $WATCH 2>/dev/null || true
wait_log /tmp/gw2.err 'lease: owner' 60
if kill -0 $GW1 2>/dev/null; then echo alive > /mnt/host/owner-alive; fi
cat /run/lb1/gw1/info | tee /mnt/host/owner-info || true
grep -E 'lease:|gateway:|backing' /tmp/gw1.err | tee /mnt/host/owner-log || true
grep -E 'lease:|gateway:' /tmp/gw2.err | tee /mnt/host/peer-log || true

# Restore the owner's mount, restart its daemon: it rejoins as standby.
umount -l $GV
gv_mount $GV_INNER
kill -TERM $GW1
_n=0
while kill -0 $GW1 2>/dev/null && [ $_n -lt 300 ]; do _n=$((_n + 1)); sleep 0.1; done
if kill -0 $GW1 2>/dev/null; then
	kill -9 $GW1
	wait $GW1 2>/dev/null || true
	echo killed > /mnt/host/owner-stop
else
	_rc=0
	wait $GW1 || _rc=$?
	echo "$_rc" > /mnt/host/owner-stop
fi
tail -20 /tmp/gw1.err
mp_gateway /tmp/gw1b 1 2 "$IQN1" 3260 "$GV/lun.img"
GW1=$LB_PID
wait_healthy
cat /run/lb1/gw1/info | tee /mnt/host/rejoin-info
show_paths rejoined
fio_run rejoin 8m && _rc=0 || _rc=$?
fio_result rejoin $_rc

mp_initiator_stop
kill -TERM $GW1 $GW2
wait $GW1 || true
wait $GW2 || true
tail -60 /tmp/multipathd.log
grep -h 'lease:\|gateway:' /tmp/gw*.err
