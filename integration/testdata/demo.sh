# SPDX-License-Identifier: Apache-2.0
# The guest half of the demo. scripts/demo.sh is the host's entry point
# of the same name: it runs TestDemo, which boots a VM and runs this file
# there (embedded with the other testdata/*.sh).
#
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "lunbridge export --size 256M --name demo /tmp/demo.img"
lb_start /tmp/lb export --size 256M --name demo /tmp/demo.img
DEV=$(lb_dev /tmp/lb demo)
say "the exported disk: $DEV"
cat /sys/block/${DEV#/dev/}/device/vendor /sys/block/${DEV#/dev/}/device/model
hostrun sg_inq $DEV | head -12
hostrun sg_readcap -l $DEV
say "the FUSE view: /run/lunbridge"
ls -l /run/lunbridge /run/lunbridge/demo
cat /run/lunbridge/demo/info
say "write 64 MiB with dd (O_DIRECT), read it back, compare with the backing file"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
dd if=/tmp/pattern of=$DEV bs=1M oflag=direct conv=fsync
dd if=$DEV of=/tmp/back bs=1M count=64 iflag=direct
dd if=/tmp/demo.img of=/tmp/file bs=1M count=64 2>/dev/null
md5sum /tmp/pattern /tmp/back /tmp/file
cmp /tmp/pattern /tmp/back && cmp /tmp/pattern /tmp/file || die "data differs"
say "fio: 4k random read/write for 10 s"
hostrun fio --name=demo --filename=$DEV --ioengine=libaio --direct=1 --rw=randrw --bs=4k --iodepth=16 \
	--runtime=10 --time_based --size=64M --randseed=42 --group_reporting | grep -E 'IOPS|lat \(usec\): min|clat percentiles' || true
say "cat /run/lunbridge/demo/stats"
cat /run/lunbridge/demo/stats
say "cat /run/lunbridge/demo/latency (microseconds)"
grep -v lt_us /run/lunbridge/demo/latency
say "lunbridge list; lunbridge stats"
$LB list
$LB stats
say "take it offline and online again through the view"
echo offline > /run/lunbridge/demo/state
dd if=$DEV of=/dev/null bs=4k count=1 iflag=direct 2>&1 | tail -1 || true
echo online > /run/lunbridge/demo/state
cat /run/lunbridge/demo/state
say "SIGTERM: drain, sync, remove the configfs objects, unmount the view"
lb_stop
target_leftovers && echo "configfs is clean"
