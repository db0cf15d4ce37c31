# SPDX-License-Identifier: Apache-2.0
# Guest side of TestScaleOutFailover and TestScaleOutGluster
# (scaleout_test.go): two lunbridge gateways of one ALUA group export one
# file, lun.img, over iSCSI; the host writes through them, and this script
# kills and restarts the owner when told. With GLUSTER set the file is on
# the in-guest GlusterFS volume, each gateway through its own FUSE client
# (gluster.sh); else on tmpfs. $IQN1, $IQN2 and the helpers come from the
# test.

gateway() { # gateway OUT GROUP PEER IQN MOUNT DIR
	# The host's initiators: iscsi-inq, and qemu-io/qemu-img (QEMU's
	# libiscsi driver). An iSCSI export admits only listed initiators.
	lb_start "$1" export --fabric iscsi --iqn "$4" --name "gw$2" --alua-identity shared \
		--initiator iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq \
		--initiator iqn.2008-11.org.linux-kvm \
		--alua-group "$2" --alua-peer "$3" --size 8M --mount "$5" --cmd-timeout 5s "$6/lun.img"
}

show_on_failure /tmp/gw1.err /tmp/gw2.err /tmp/gw1b.err
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
gateway /tmp/gw1 1 2 "$IQN1" '' $DIR1
GW1=$LB_PID
wait_log /tmp/gw1.err 'lease: owner'
gateway /tmp/gw2 2 1 "$IQN2" /run/lb2 $DIR2
GW2=$LB_PID
sleep 1
grep -q 'lease: acquired' /tmp/gw2.err && die "gateway 2 took the lease from a live owner"
signal ready

waitfor kill1
kill -9 $GW1
wait $GW1 2>/dev/null || true
signal killed
wait_log /tmp/gw2.err 'lease: owner'

waitfor restart1
gateway /tmp/gw1b 1 2 "$IQN1" /run/lb1b $DIR1
GW1=$LB_PID
signal restarted

waitfor finish
grep -q 'lease: acquired' /tmp/gw1b.err && die "the restarted gateway 1 took the lease"
# The FUSE view of each: the owner at epoch 2, the standby behind it.
cat /run/lb2/gw2/info /run/lb1b/gw1/info
for kv in 'alua_group 2' 'alua_state active_optimized' 'owner 1' 'owner_group 2' 'epoch 2'; do
	grep -qx "$kv" /run/lb2/gw2/info || die "gateway 2 info lacks \"$kv\""
done
for kv in 'alua_group 1' 'alua_state standby' 'owner 0' 'owner_group 2' 'epoch 2'; do
	grep -qx "$kv" /run/lb1b/gw1/info || die "restarted gateway 1 info lacks \"$kv\""
done
kill -TERM $GW1 $GW2
wait $GW1 || die "gateway 1 exited with $?"
wait $GW2 || die "gateway 2 exited with $?"
grep -h 'lease:' /tmp/gw1.err /tmp/gw2.err /tmp/gw1b.err
cp $DIR1/lun.img /mnt/host/lun.img
target_leftovers
