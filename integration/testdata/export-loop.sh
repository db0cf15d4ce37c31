# SPDX-License-Identifier: Apache-2.0
lb_start /tmp/lb --log-level debug export --size 64M --name disk0 /tmp/disk0.img
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no block device in lunbridge's output"
cat /sys/block/${DEV#/dev/}/queue/max_sectors_kb /sys/block/${DEV#/dev/}/size
# The 1 MiB default as the kernel sees it: the initiator's request size,
# the backstore's limit, and a data area that holds a queue of them.
A=$(ls -d /sys/kernel/config/target/core/user_*/*/attrib | head -n 1)
echo "max_sectors_kb $(cat /sys/block/${DEV#/dev/}/queue/max_sectors_kb)
hw_max_sectors $(cat $A/hw_max_sectors)
hw_queue_depth $(cat $A/hw_queue_depth)
max_data_area_mb $(cat $A/max_data_area_mb)" | tee /mnt/host/limits
cat /run/lunbridge/disk0/info
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
cp /run/lunbridge/disk0/stats /mnt/host/stats.before
dd if=/tmp/pattern of=$DEV bs=1M oflag=direct conv=fsync
dd if=$DEV of=/tmp/back bs=1M iflag=direct
cp /run/lunbridge/disk0/stats /mnt/host/stats.after
md5sum /tmp/pattern /tmp/back /tmp/disk0.img | tee /mnt/host/md5
# A LUN RESET reaches the ring as a TMR entry (tmr_notification=1); the
# disk keeps working after it.
hostrun sg_reset --device $DEV
n=0
until grep -q 'task management.*tmr=LUN_RESET' /tmp/lb.err; do
	n=$((n + 1)); [ $n -lt 100 ] || { cat /tmp/lb.err; die "no TMR entry for the LUN RESET"; }
	sleep 0.1
done
dd if=$DEV of=/dev/null bs=1M count=4 iflag=direct
lb_stop
md5sum /tmp/disk0.img >> /mnt/host/md5
target_leftovers
[ -z "$(ls /run/lunbridge 2>/dev/null)" ] || die "FUSE view still mounted"
