# SPDX-License-Identifier: Apache-2.0
ARGS="export --size 64M --name disk0 /tmp/disk0.img"
lb_start /tmp/lb $ARGS
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no block device"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/pattern2 bs=1M count=4 2>/dev/null
# 4 KiB writes: 16384 commands, so the kill lands mid-write.
dd if=/tmp/pattern of=$DEV bs=4k oflag=direct conv=fsync 2>/tmp/dd.err &
DD=$!
n=0
until [ "$(stat_of /run/lunbridge/disk0/stats write_ops)" -ge 1000 ]; do
	n=$((n + 1)); [ $n -lt 1200 ] || die "the write did not start"
	sleep 0.05
done
kill -0 $DD || die "dd finished before the kill: make the write longer"
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
echo "killed lunbridge during the write"
sleep 1
lb_start /tmp/lb2 $ARGS
grep -q "adopting" /tmp/lb2.err || die "the restarted daemon did not adopt the device"
wait $DD || { cat /tmp/dd.err; die "dd failed across the restart"; }
dd if=$DEV of=/tmp/back bs=1M iflag=direct 2>/dev/null
md5sum /tmp/pattern /tmp/back /tmp/disk0.img | tee /mnt/host/md5
# Acknowledged after SYNCHRONIZE CACHE (conv=fsync), then SIGKILL.
dd if=/tmp/pattern2 of=$DEV bs=1M oflag=direct conv=fsync seek=8 2>/dev/null
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
dd if=/tmp/disk0.img of=/tmp/region bs=1M skip=8 count=4 2>/dev/null
md5sum /tmp/pattern2 /tmp/region | tee /mnt/host/md5.sync
lb_start /tmp/lb3 $ARGS
lb_stop

# A restart with other LUNs: killed while serving disk0 (lun_0) and disk1
# (lun_1), lunbridge comes back with disk1 and a new disk2. disk1 keeps
# its LUN number, so its disk is the one it was, with its bytes; disk2 is
# served beside disk0's stale LUN, which the log names. Then a clean stop
# leaves disk0's LUN alone, and a daemon that serves disk0 again clears it.
show_on_failure /tmp/lb5.err
lb_start /tmp/lb4 export --size 64M --name disk0 --name disk1 /tmp/disk0.img /tmp/disk1.img
DEV1=$(lb_dev /tmp/lb4 disk1)
dd if=/tmp/pattern2 of=$DEV1 bs=1M oflag=direct conv=fsync 2>/dev/null
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
lb_start /tmp/lb5 export --size 64M --name disk1 --name disk2 /tmp/disk1.img /tmp/disk2.img
[ "$(lb_dev /tmp/lb5 disk1)" = "$DEV1" ] || die "disk1 is $(lb_dev /tmp/lb5 disk1) after the restart, was $DEV1"
grep -q "nobody serves it.*user_0/disk0" /tmp/lb5.err || die "no warning about disk0's stale LUN"
DEV2=$(lb_dev /tmp/lb5 disk2)
[ -b "$DEV2" ] || die "no block device for disk2"
dd if=$DEV1 of=/tmp/back1 bs=1M count=4 iflag=direct 2>/dev/null
dd if=/tmp/pattern2 of=$DEV2 bs=1M oflag=direct conv=fsync 2>/dev/null
dd if=/tmp/disk2.img of=/tmp/back2 bs=1M count=4 2>/dev/null
md5sum /tmp/pattern2 /tmp/back1 /tmp/back2 | tee /mnt/host/md5.other
lb_stop
[ -d "$CFG/core/user_0/disk0" ] || die "the clean stop removed disk0's stale backstore"
lb_start /tmp/lb6 $ARGS
lb_stop
target_leftovers
