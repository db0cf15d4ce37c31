# SPDX-License-Identifier: Apache-2.0
# Guest side of TestExclusiveOwner and TestExclusiveOwnerGluster
# (exclusive_test.go): one file, one writer. Holders start, second
# exporters of their files must be refused before they become ready or
# mount a view, holders stay untouched, gateways share. With GLUSTER set
# the files are on the in-guest GlusterFS volume, the holders on one FUSE
# client ($GV) and the others on a second one; else on tmpfs. Each refusal
# leaves the refused daemon's stderr in /mnt/host/CASE.refused and the
# holder's pid in /mnt/host/CASE.holder; each start that must succeed
# leaves /mnt/host/CASE.ok.

# refused CASE HOLDER_PID ARGS...: "lunbridge ARGS" must exit non-zero
# without becoming ready and without mounting its view.
refused() {
	_c=$1; _h=$2; shift 2
	$LB "$@" > /tmp/$_c.out 2> /tmp/$_c.err &
	_p=$!
	_n=0
	while kill -0 $_p 2>/dev/null; do
		_n=$((_n + 1))
		if [ $_n -gt 600 ] || grep -q 'lunbridge: ready' /tmp/$_c.out; then
			kill -9 $_p; wait $_p || true
			cat /tmp/$_c.out /tmp/$_c.err; die "$_c: the second exporter became ready or kept running"
		fi
		sleep 0.1
	done
	if wait $_p; then
		cat /tmp/$_c.out /tmp/$_c.err; die "$_c: the second exporter exited 0"
	fi
	grep -q 'fusefs: mounted' /tmp/$_c.err && die "$_c: the refused daemon mounted its view first"
	cp /tmp/$_c.err /mnt/host/$_c.refused
	echo "$_h" > /mnt/host/$_c.holder
	echo "$_c: $(grep '^lunbridge:' /tmp/$_c.err)"
}
# stop PID OUT: SIGTERM the daemon PID and check it exits 0.
stop() {
	kill -TERM $1
	wait $1 || { _rc=$?; cat "$2.err"; die "lunbridge $1 exited with $_rc"; }
}
# ok CASE: record that CASE's start succeeded.
ok() { : > /mnt/host/$1.ok; echo "$1: ok"; }

mkdir -p /etc/target/pr
if [ -n "$GLUSTER" ]; then
	gluster_up
	DIR1=$GV
	DIR2=$(gv_mount /tmp/gv2)
else
	DIR1=/tmp/shared
	DIR2=/tmp/shared
	mkdir -p $DIR1
fi

# A loop export holds f.img; a second loop export and an iSCSI export of
# it are refused, and so (on one machine) is its LUN name for another file.
lb_start /tmp/a export --size 16M --name disk0 --mount /run/lba $DIR1/f.img
A=$LB_PID
DEV=$(lb_dev /tmp/a disk0)
[ -b "$DEV" ] || die "no block device"
refused loop-loop $A export --name other --mount /run/lbb $DIR2/f.img
refused loop-iscsi $A export --fabric iscsi --initiator iqn.2026-12.org.lunbridge.test:i \
	--name other --mount /run/lbb $DIR2/f.img
if [ -z "$GLUSTER" ]; then
	refused name $A export --fabric none --size 16M --name disk0 --mount /run/lbb /tmp/h.img
fi
# The holder is untouched: its disk still writes and reads.
kill -0 $A || die "the holder died"
dd if=/dev/urandom of=/tmp/p bs=1M count=4 2>/dev/null
dd if=/tmp/p of=$DEV bs=1M oflag=direct conv=fsync 2>/dev/null
dd if=$DEV of=/tmp/back bs=1M count=4 iflag=direct 2>/dev/null
cmp /tmp/p /tmp/back || die "the holder's disk changed under the refusals"
ok holder
stop $A /tmp/a

# fabric none on both sides; then kill -9 of the holder: its lock goes
# with it and the refused one starts.
lb_start /tmp/n1 export --fabric none --size 16M --name n1 --mount /run/lbn1 $DIR1/g.img
N1=$LB_PID
refused none-none $N1 export --fabric none --name n2 --mount /run/lbn2 $DIR2/g.img
kill -9 $N1
wait $N1 2>/dev/null || true
lb_start /tmp/n2 export --fabric none --name n2 --mount /run/lbn2 $DIR2/g.img
ok kill
stop $LB_PID /tmp/n2
# The killed holder's backstore is adopted by its restart and removed by
# its clean stop.
lb_start /tmp/n1b export --fabric none --name n1 --mount /run/lbn1 $DIR1/g.img
stop $LB_PID /tmp/n1b

# Gateways of one group share s.img; a plain export is refused beside
# them, and a gateway beside a plain export.
lb_start /tmp/g1 export --fabric none --size 16M --name gw1 --alua-group 1 --alua-peer 2 \
	--mount /run/lbg1 $DIR1/s.img
G1=$LB_PID
refused plain-gateway $G1 export --fabric none --name p1 --mount /run/lbp $DIR2/s.img
lb_start /tmp/g2 export --fabric none --name gw2 --alua-group 2 --alua-peer 1 \
	--mount /run/lbg2 $DIR2/s.img
ok gateways
stop $LB_PID /tmp/g2
stop $G1 /tmp/g1
lb_start /tmp/p export --fabric none --name p1 --mount /run/lbp $DIR2/s.img
P=$LB_PID
refused gateway-plain $P export --fabric none --name gw1 --alua-group 1 --alua-peer 2 \
	--mount /run/lbg1 $DIR1/s.img
stop $P /tmp/p
target_leftovers
