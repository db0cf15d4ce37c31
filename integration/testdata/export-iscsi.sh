echo -n "$SECRET" > /tmp/chap
lb_start /tmp/lb export --fabric iscsi --iqn $IQN --initiator $QEMU_IQN \
	--chap-user $CHAP_USER --chap-password-file /tmp/chap --size 8M \
	--name lun0 --name lun1 /tmp/lun0.img /tmp/lun1.img
grep -q "lun0: iscsi iscsi://0.0.0.0:3260/$IQN/0" /tmp/lb.out || die "no LUN 0 line"
grep -q "lun1: iscsi iscsi://0.0.0.0:3260/$IQN/1" /tmp/lb.out || die "no LUN 1 line"
grep -q "$SECRET" /tmp/lb.out /tmp/lb.err && die "the CHAP secret was printed"
signal exported
waitfor written
md5sum /tmp/lun0.img /tmp/lun1.img | cut -d' ' -f1 > /mnt/host/backing.md5
signal hashed
waitfor done
# A killed daemon leaves its target behind; the next one makes it anew.
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
lb_start /tmp/lb2 export --fabric iscsi --iqn $IQN --initiator $QEMU_IQN \
	--chap-user $CHAP_USER --chap-password-file /tmp/chap --size 8M \
	--name lun0 --name lun1 /tmp/lun0.img /tmp/lun1.img
signal restarted
waitfor checked
lb_stop
grep -q "$SECRET" /tmp/lb.out /tmp/lb.err /tmp/lb2.out /tmp/lb2.err && die "the CHAP secret was logged"
target_leftovers
