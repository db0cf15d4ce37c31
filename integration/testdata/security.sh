# SPDX-License-Identifier: Apache-2.0
# Guest half of TestSecurity (integration/security_test.go), after
# lunbridgeLib. The host sets: IQN (target name prefix), ALLOWED (the
# initiator on the ACLs), CUSER, SECRET, TUSER, TSECRET (mutual CHAP),
# DROP (capability numbers to drop, comma-separated), BND (the bounding set
# left, as /proc/PID/status shows it) and LASTCAP (the highest capability
# number DROP covers).
#
# Every daemon runs with the capability bounding set of
# examples/lunbridge.service: the host's capsh (through hostrun) drops the
# rest, then execs lunbridge, so LB_PID is lunbridge itself.
[ "$(cat /proc/sys/kernel/cap_last_cap)" = "$LASTCAP" ] || die "cap_last_cap is $(cat /proc/sys/kernel/cap_last_cap), the host computed DROP up to $LASTCAP"
lbcap() { exec hostrun capsh --drop="$DROP" -- -c 'exec /mnt/lunbridge "$@"' lunbridge "$@"; }
LB=lbcap
# check_caps: the daemon runs with exactly the unit's bounding set.
check_caps() {
	_b=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/$LB_PID/status)
	[ "$_b" = "$BND" ] || die "lunbridge's bounding set is $_b, want $BND"
}

umask 077
printf '%s' "$SECRET" > /tmp/chap
printf '%s' "$TSECRET" > /tmp/chap-target

# A secret file others can read is refused before anything is made.
cp /tmp/chap /tmp/chap-open
chmod 644 /tmp/chap-open
if /mnt/host/lunbridge export --fabric iscsi --iqn $IQN:refused --initiator $ALLOWED \
	--chap-user $CUSER --chap-password-file /tmp/chap-open --mount "" --size 1M /tmp/refused.img \
	2> /tmp/refused.err; then
	die "a world-readable secret file was accepted"
fi
cat /tmp/refused.err
grep -q "mode 0644" /tmp/refused.err || die "the refusal does not say why"
[ ! -e /tmp/refused.img ] || die "the refused export created its backing file"
[ ! -e /sys/kernel/config/target/iscsi/$IQN:refused ] || die "the refused export made a target"

# phase NAME ARGS...: export NAME.img as $IQN:NAME with ARGS, let the host
# try its logins, stop.
phase() {
	_p=$1; shift
	lb_start /tmp/$_p export --fabric iscsi --iqn $IQN:$_p --mount "" --size 4M \
		--name $_p "$@" /tmp/$_p.img
	check_caps
	T=/sys/kernel/config/target/iscsi/$IQN:$_p/tpgt_1
	echo "$_p: generate_node_acls $(cat $T/attrib/generate_node_acls) authentication $(cat $T/attrib/authentication) acls: $(ls $T/acls)"
	if [ -n "$CHECK_SECRET_READ" ]; then
		ls -l $T/acls/$ALLOWED/auth/password
		if hostrun setpriv --reuid=65534 --regid=65534 --clear-groups cat $T/acls/$ALLOWED/auth/password; then
			die "uid 65534 read the CHAP secret from configfs"
		fi
	fi
	signal $_p
	waitfor $_p-done
	lb_stop
	grep -q -e "$SECRET" -e "$TSECRET" /tmp/$_p.out /tmp/$_p.err && die "a CHAP secret was logged"
	target_leftovers
}

# Deny by default: no ACL, no generated ACLs, and the log says how to
# allow an initiator.
lb_start /tmp/deny export --fabric iscsi --iqn $IQN:deny --mount "" --size 4M --name deny /tmp/deny.img
check_caps
T=/sys/kernel/config/target/iscsi/$IQN:deny/tpgt_1
[ "$(cat $T/attrib/generate_node_acls)" = 0 ] || die "default export: generate_node_acls is not 0"
[ -z "$(ls $T/acls)" ] || die "default export: ACLs $(ls $T/acls)"
grep -q -e "--initiator" /tmp/deny.err || die "no log line saying how to allow initiators (--initiator)"
signal deny
waitfor deny-done
lb_stop
target_leftovers

phase listed --initiator $ALLOWED
phase any --insecure-allow-any-initiator
grep 'level=WARN' /tmp/any.err | grep -q -i 'initiator' || die "no warning for --insecure-allow-any-initiator"
# LIO keeps the secret in configfs while the target exists; the file's
# mode says 0644, but only CAP_SYS_ADMIN may read it: a user may not.
CHECK_SECRET_READ=1
phase chap --initiator $ALLOWED --chap-user $CUSER --chap-password-file /tmp/chap
CHECK_SECRET_READ=
phase mutual --initiator $ALLOWED --chap-user $CUSER --chap-password-file /tmp/chap \
	--chap-mutual-user $TUSER --chap-mutual-password-file /tmp/chap-target

# CAP_SYS_ADMIN is needed for iSCSI with CHAP even without the view:
# LIO's configfs store of CHAP credentials checks capable(CAP_SYS_ADMIN).
# The start fails, says why, and leaves nothing behind.
hostrun capsh --drop="$DROP,21" -- -c 'exec /mnt/lunbridge "$@"' lunbridge \
	export --fabric iscsi --iqn $IQN:nosysadmin --initiator $ALLOWED --chap-user $CUSER \
	--chap-password-file /tmp/chap --mount "" --size 1M --name nosysadmin /tmp/nosysadmin.img \
	> /tmp/nosysadmin.out 2> /tmp/nosysadmin.err &
P=$!
n=0
while kill -0 $P 2>/dev/null; do
	n=$((n + 1))
	[ $n -lt 300 ] || { kill $P; die "lunbridge started CHAP without CAP_SYS_ADMIN"; }
	sleep 0.1
done
if wait $P; then die "lunbridge without CAP_SYS_ADMIN exited 0"; fi
cat /tmp/nosysadmin.err
grep -q "operation not permitted" /tmp/nosysadmin.err || die "no EPERM in the failed start's error"
target_leftovers

# The same bounding set serves a local disk with the FUSE view: I/O, a
# grow (which answers the kernel's netlink event) and a flush through the
# control file.
# The daemon runs in hostrun's chroot: its view is mounted on the chroot's
# bind of /run, seen from here under /hostroot.
VIEW=/hostroot/run/lunbridge
# The backing file belongs to another user, mode 0600, as a VM image
# often does: root reaches it only through CAP_DAC_OVERRIDE.
dd if=/dev/zero of=/tmp/loopcap.img bs=1M count=8 2>/dev/null
chown 4242:4242 /tmp/loopcap.img
chmod 600 /tmp/loopcap.img
lb_start /tmp/loop export --name loopcap /tmp/loopcap.img
check_caps
DEV=$(lb_dev /tmp/loop loopcap)
[ -b "$DEV" ] || die "no block device"
dd if=/dev/urandom of=/tmp/pat bs=64k count=16 2>/dev/null
dd if=/tmp/pat of=$DEV bs=64k oflag=direct conv=fsync 2>/dev/null
cmp -n 1048576 /tmp/pat /tmp/loopcap.img || die "the write did not reach the backing file"
echo 16M > $VIEW/loopcap/size
[ "$(cat $VIEW/loopcap/size)" = 16777216 ] || die "size after the grow: $(cat $VIEW/loopcap/size)"
echo flush > $VIEW/loopcap/ctl
grep -q "dev_size was not updated" /tmp/loop.err && die "resize: no netlink listener under the reduced capability set"
[ "$(stat_of $VIEW/loopcap/stats write_bytes)" -ge 1048576 ] || die "stats: no write_bytes in the view"
lb_stop
target_leftovers
