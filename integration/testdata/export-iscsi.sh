# SPDX-License-Identifier: Apache-2.0
echo -n "$SECRET" > /tmp/chap
chmod 600 /tmp/chap # lunbridge refuses a secret file others can read
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

# Deny by default: without --initiator the target admits nobody (no ACL,
# generate_node_acls=0) and the log says how to allow an initiator.
TPG=$CFG/iscsi/$IQN/tpgt_1
lb_start /tmp/lb3 export --fabric iscsi --iqn $IQN --size 8M --name lun0 /tmp/lun0.img
[ "$(cat $TPG/attrib/generate_node_acls)" = 0 ] || die "generate_node_acls is not 0 by default"
[ -z "$(ls $TPG/acls)" ] || die "ACLs made without --initiator: $(ls $TPG/acls)"
grep -q 'level=WARN.*admits no initiator.*--initiator' /tmp/lb3.err || { cat /tmp/lb3.err; die "no hint on how to allow initiators"; }
signal denied
waitfor denied-checked
lb_stop
# --insecure-allow-any-initiator: demo mode, and a warning at each start.
lb_start /tmp/lb4 export --fabric iscsi --iqn $IQN --insecure-allow-any-initiator --size 8M --name lun0 /tmp/lun0.img
[ "$(cat $TPG/attrib/generate_node_acls)" = 1 ] || die "--insecure-allow-any-initiator did not open the target"
grep -q 'level=WARN.*EVERY initiator' /tmp/lb4.err || { cat /tmp/lb4.err; die "no warning for a target open to every initiator"; }
signal open
waitfor open-checked
lb_stop
target_leftovers
