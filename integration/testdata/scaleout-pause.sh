# SPDX-License-Identifier: Apache-2.0
# Guest side of TestScaleOutPause (scaleout_pause_test.go): two lunbridge
# gateways of one ALUA group export one file, lun.img, over iSCSI, each
# through its own FUSE client of one directory (loopfs -locks, so that the
# lease's OFD lock goes through the clients, as on a distributed file
# system). When told, the owner and its client are stopped (SIGSTOP) and
# the client's locks are dropped first, as a server drops the session of
# a client that stopped answering; the other gateway takes over; then both
# are resumed. $IQN1, $IQN2 and the helpers come from the test.

client() { # client MOUNT: loopfs of /tmp/shared at MOUNT; sets FS_PID
	mkdir -p "$1"
	/mnt/host/loopfs -locks /tmp/shared "$1" > "$1.out" 2>&1 &
	FS_PID=$!
	wait_log "$1.out" mounted
}

gateway() { # gateway OUT GROUP PEER IQN MOUNT DIR
	lb_start "$1" export --fabric iscsi --iqn "$4" --name "gw$2" --alua-identity shared \
		--initiator iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq \
		--initiator iqn.2008-11.org.linux-kvm \
		--alua-group "$2" --alua-peer "$3" --size 8M --mount "$5" --cmd-timeout 5s "$6/lun.img"
}

show_on_failure /tmp/gw1.err /tmp/gw2.err /tmp/c1.out /tmp/c2.out
mkdir -p /etc/target/pr /tmp/shared
client /tmp/c1
FS1=$FS_PID
client /tmp/c2
FS2=$FS_PID
gateway /tmp/gw1 1 2 "$IQN1" /run/lb1 /tmp/c1
GW1=$LB_PID
wait_log /tmp/gw1.err 'lease: owner'
gateway /tmp/gw2 2 1 "$IQN2" /run/lb2 /tmp/c2
GW2=$LB_PID
sleep 1
grep -q 'lease: acquired' /tmp/gw2.err && die "gateway 2 took the lease from a live owner"
signal ready

waitfor pause1
kill -STOP $GW1
kill -USR1 $FS1
wait_log /tmp/c1.out 'dropped the locks'
kill -STOP $FS1
signal paused
wait_log /tmp/gw2.err 'lease: owner'
signal taken

waitfor resume1
kill -CONT $FS1 $GW1
wait_log /tmp/gw1.err 'lease: fenced'
signal resumed

waitfor finish
cat /run/lb2/gw2/info /run/lb1/gw1/info
# Exactly one owner, and both agree on the epoch (2, or 3 if a WRITE
# that waited in gateway 1's ring moved the LUN back to it).
# A hand-back may still be in flight (transitioning: no owner for a
# moment), so wait up to 15 s for exactly one owner; two owners fail at once.
i=0
while :; do
	owners=$(cat /run/lb2/gw2/info /run/lb1/gw1/info | grep -cx 'owner 1' || true)
	[ "$owners" -le 1 ] || die "$owners owners"
	[ "$owners" = 1 ] && break
	i=$((i + 1))
	[ $i -lt 30 ] || die "$owners owners after 15 s"
	sleep 0.5
done
e1=$(stat_of /run/lb1/gw1/info epoch)
e2=$(stat_of /run/lb2/gw2/info epoch)
[ "$e1" = "$e2" ] && [ "$e1" -ge 2 ] || die "epochs $e1 and $e2"
kill -TERM $GW1 $GW2
wait $GW1 || die "gateway 1 exited with $?"
wait $GW2 || die "gateway 2 exited with $?"
grep -h 'lease:' /tmp/gw1.err /tmp/gw2.err
kill -TERM $FS1 $FS2
wait $FS1 $FS2 || true
cp /tmp/shared/lun.img /mnt/host/lun.img
target_leftovers
