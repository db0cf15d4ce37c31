# SPDX-License-Identifier: Apache-2.0
lb_start /tmp/lb --log-level warn export --mount= --size 32M --name flush /tmp/flush.img
DEV=$(lb_dev /tmp/lb flush)
[ -b "$DEV" ] || die "no block device in lunbridge's output"
# Load from two readers and a writer so that the runtime starts threads.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
dd if=/tmp/pattern of=$DEV bs=64k oflag=direct 2>/dev/null &
w=$!
dd if=$DEV of=/dev/null bs=4k count=2048 iflag=direct 2>/dev/null &
r=$!
dd if=$DEV of=/dev/null bs=1M iflag=direct 2>/dev/null
wait $w $r # not a bare wait: lunbridge is a background job too
n=0
for s in /proc/$LB_PID/task/*/stat; do
	f=$(cut -d' ' -f9 "$s")
	n=$((n + 1))
	[ $((f & 0x180000)) = $((0x180000)) ] || die "thread ${s%/stat}: flags $f lack PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE"
done
echo "all $n threads of lunbridge are I/O flushers"
[ $n -ge 2 ] || die "only $n threads"
lb_stop
target_leftovers
