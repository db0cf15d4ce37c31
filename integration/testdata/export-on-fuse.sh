# SPDX-License-Identifier: Apache-2.0
mkdir -p /tmp/under /tmp/fuse
/mnt/host/loopfs /tmp/under /tmp/fuse > /tmp/loopfs.out 2>&1 &
LOOPFS=$!
n=0
until grep -q mounted /tmp/loopfs.out; do
	n=$((n + 1)); [ $n -lt 300 ] || { cat /tmp/loopfs.out; die "loopfs did not mount"; }
	sleep 0.1
done
grep -q ' /tmp/fuse fuse' /proc/mounts || die "no FUSE mount at /tmp/fuse"
lb_start /tmp/lb export --size 32M --name onfuse /tmp/fuse/disk.img
DEV=$(lb_dev /tmp/lb onfuse)
[ -b "$DEV" ] || die "no block device"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=32 2>/dev/null
dd if=/tmp/pattern of=$DEV bs=1M oflag=direct conv=fsync
dd if=$DEV of=/tmp/back bs=1M iflag=direct
md5sum /tmp/pattern /tmp/back /tmp/under/disk.img | tee /mnt/host/md5
hostrun blkdiscard -o 0 -l 1048576 $DEV
dd if=$DEV of=/tmp/discarded bs=1M count=1 iflag=direct
dd if=/dev/zero of=/tmp/zeros bs=1M count=1
cmp /tmp/discarded /tmp/zeros || die "discarded range does not read back as zeros"
cmp -n 1048576 /tmp/under/disk.img /tmp/zeros || die "discarded range is not zero in the backing file"
cat /run/lunbridge/onfuse/stats > /mnt/host/stats
lb_stop
kill -TERM $LOOPFS
wait $LOOPFS
target_leftovers
