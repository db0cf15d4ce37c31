# SPDX-License-Identifier: Apache-2.0
V=/run/lunbridge
H=/mnt/host
ARGS="export --size 64M --name disk0 /tmp/disk0.img"
lb_start /tmp/lb $ARGS
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no block device"
SD=${DEV#/dev/}
cat $V/version
ls -l $V $V/disk0 | tee $H/ls
cat $V/luns | tee $H/luns
cat $V/disk0/info | tee $H/info
grep -qx "fabric_path $DEV" $V/disk0/info || die "info does not name $DEV"

# Counters move by exactly the I/O done: 256 writes and 256 reads of 64 KiB.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
echo reset-stats > $V/disk0/ctl
cp $V/disk0/stats $H/stats.0
dd if=/tmp/pattern of=$DEV bs=64k oflag=direct conv=fsync 2>/dev/null
cp $V/disk0/stats $H/stats.1
dd if=$DEV of=/tmp/back bs=64k count=256 iflag=direct 2>/dev/null
cp $V/disk0/stats $H/stats.2
cp $V/disk0/stats.json $H/stats.json
cat $V/disk0/latency | tee $H/latency
cmp /tmp/pattern /tmp/back || die "read back differs"

# Strict writes: garbage is refused and changes nothing.
if echo sideways > $V/disk0/state; then die "state accepted garbage"; fi
if printf 'offline\nonline\n' > $V/disk0/state; then die "state accepted two lines"; fi
if echo hello > $V/disk0/stats; then die "stats accepted a write"; fi
[ "$(cat $V/disk0/state)" = online ] || die "state changed by refused writes"

# Offline: the initiator's reads fail with NOT READY.
echo offline > $V/disk0/state
[ "$(cat $V/disk0/state)" = offline ] || die "state is not offline"
if dd if=$DEV of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then die "read succeeded while offline"; fi
echo online > $V/disk0/state
dd if=$DEV of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || die "read failed back online"
cp $V/disk0/stats $H/stats.3

# Read-only: writes fail (DATA PROTECT), reads work.
echo 1 > $V/disk0/read_only
if dd if=/tmp/pattern of=$DEV bs=4k count=1 oflag=direct 2>/dev/null; then die "write succeeded while read-only"; fi
echo 0 > $V/disk0/read_only
dd if=/tmp/pattern of=$DEV bs=4k count=1 oflag=direct 2>/dev/null || die "write failed after read_only=0"

# Grow; shrinking is refused.
echo 128M > $V/disk0/size
[ "$(cat $V/disk0/size)" = 134217728 ] || die "size is $(cat $V/disk0/size)"
if echo 32M > $V/disk0/size; then die "shrink accepted"; fi
echo 1 > /sys/block/$SD/device/rescan
[ "$(cat /sys/block/$SD/size)" = 262144 ] || die "kernel sees $(cat /sys/block/$SD/size) sectors after the grow"
dd if=$DEV of=/dev/null bs=64k skip=1500 count=1 iflag=direct 2>/dev/null || die "read of a new block failed"
echo flush > $V/disk0/ctl

# Export and remove through /luns.
echo "export disk1 /tmp/disk1.img size=16M" > $V/luns
[ -d $V/disk1 ] || die "no disk1 directory after export"
DEV1=$(sed -n 's/^fabric_path //p' $V/disk1/info)
[ -b "$DEV1" ] || die "disk1 has no block device ($DEV1)"
dd if=/tmp/pattern of=$DEV1 bs=64k count=16 oflag=direct 2>/dev/null
[ "$(stat_of $V/disk1/stats write_bytes)" = 1048576 ] || die "disk1 write_bytes $(stat_of $V/disk1/stats write_bytes)"
cat $V/luns | tee $H/luns.2
echo "remove disk1" > $V/luns
[ ! -e $V/disk1 ] || die "disk1 directory left after remove"
[ ! -e "$DEV1" ] || die "$DEV1 left after remove"

# A killed daemon leaves a stale mount; the next one replaces it.
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
if ls $V 2>/tmp/stale.err; then die "view still answers after SIGKILL"; fi
cat /tmp/stale.err
grep -q "not connected" /tmp/stale.err || die "no stale mount after SIGKILL"
lb_start /tmp/lb2 export --size 128M --name disk0 /tmp/disk0.img
grep -q "detaching stale mount" /tmp/lb2.err || die "the new daemon did not report the stale mount"
[ "$(cat $V/disk0/state)" = online ] || die "view not served after restart"

# Shutdown unmounts although a reader holds a file open.
exec 3< $V/disk0/stats
lb_stop
if cat <&3 >/dev/null 2>&1; then die "the held file still reads after shutdown"; fi
exec 3<&-
grep "fusefs:" $LB_OUT.err
grep -q "mount busy" $LB_OUT.err || die "shutdown did not meet the held file (no busy unmount)"
if grep -q " $V " /proc/mounts; then die "view still mounted after shutdown"; fi
target_leftovers
