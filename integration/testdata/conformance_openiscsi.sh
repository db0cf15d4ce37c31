# SPDX-License-Identifier: Apache-2.0
# Guest side of TestOpenISCSI (lunbridgeLib and the guest library are
# sourced first; IQN, INIT and SIZE are set before). The guest is its own
# initiator: open-iscsi's iscsid and iscsiadm (the host's binaries, run
# through hostrun) with the guest kernel's iscsi_tcp, over 127.0.0.1.

# Without a NIC the guest's loopback is still down.
ip link set lo up
lb_start /tmp/lb export --fabric iscsi --iqn "$IQN" --initiator "$INIT" \
	--size "$SIZE" --name fs /tmp/fs.img

# open-iscsi keeps its node database under /etc/iscsi: give it a writable
# one over the read-only host root, with this initiator's name, and start
# iscsid ourselves (the packaged config would ask systemd to).
mkdir -p /tmp/etc-iscsi /run/lock/iscsi
sed 's|^iscsid.startup.*|iscsid.startup = /bin/true|' /hostroot/etc/iscsi/iscsid.conf > /tmp/etc-iscsi/iscsid.conf
echo "InitiatorName=$INIT" > /tmp/etc-iscsi/initiatorname.iscsi
mount --bind /tmp/etc-iscsi /hostroot/etc/iscsi
hostrun iscsid
n=0
until [ -e /run/iscsid.pid ]; do
	n=$((n + 1)); [ $n -lt 100 ] || die "iscsid did not start"
	sleep 0.1
done

hostrun iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 | tee /tmp/discovery
grep -q "$IQN" /tmp/discovery || die "discovery did not list $IQN"
hostrun iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --login
DEV=
n=0
while [ -z "$DEV" ]; do
	for b in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
		[ -e "$b" ] && DEV=/dev/${b##*/}
	done
	n=$((n + 1)); [ $n -lt 300 ] || die "no disk after login"
	[ -n "$DEV" ] || sleep 0.1
done
[ -b "$DEV" ] || die "$DEV is not a block device"
echo "open-iscsi disk: $DEV"
cat /sys/block/${DEV#/dev/}/device/vendor /sys/block/${DEV#/dev/}/queue/discard_max_bytes

hostrun mkfs.ext4 -q -F -E nodiscard "$DEV"
mkdir -p /mnt/fs
mount -t ext4 "$DEV" /mnt/fs
# A few hundred MiB of files: 12 copies of a 16 MiB random file.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
want=$(md5sum < /tmp/pattern | cut -d' ' -f1)
i=0
while [ $i -lt 12 ]; do
	cp /tmp/pattern /mnt/fs/f$i
	i=$((i + 1))
done
sync
umount /mnt/fs
echo 3 > /proc/sys/vm/drop_caches
hostrun e2fsck -f -n "$DEV" || die "e2fsck found errors after the writes"
mount -t ext4 "$DEV" /mnt/fs
i=0
while [ $i -lt 12 ]; do
	got=$(md5sum < /mnt/fs/f$i | cut -d' ' -f1)
	[ "$got" = "$want" ] || die "f$i reads back as $got, want $want"
	i=$((i + 1))
done
before=$(stat -c %b /tmp/fs.img)
rm /mnt/fs/f*
sync
# Blocks freed in a journal transaction not yet checkpointed may be
# skipped by fstrim (see the XFS case below): remount first.
umount /mnt/fs
mount -t ext4 "$DEV" /mnt/fs
# busybox fstrim: the host's would not see a mount made in the guest.
fstrim -v /mnt/fs
sync
after=$(stat -c %b /tmp/fs.img)
echo "backing file: $before blocks allocated before fstrim, $after after"
echo "$before $after" > /mnt/host/alloc
umount /mnt/fs
hostrun e2fsck -f -n "$DEV" || die "e2fsck found errors after fstrim"

hostrun iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --logout
n=0
while [ -e "$DEV" ]; do
	n=$((n + 1)); [ $n -lt 100 ] || die "$DEV still there after logout"
	sleep 0.1
done
kill "$(cat /run/iscsid.pid)"
lb_stop
rm /tmp/fs.img

# The same through tcm_loop with XFS (mkfs.xfs wants 300 MiB at least).
lb_start /tmp/lb2 export --size 320M --name xfs /tmp/xfs.img
DEV=$(lb_dev /tmp/lb2 xfs)
[ -b "$DEV" ] || die "no block device for the XFS LUN"
hostrun mkfs.xfs -q -f -K "$DEV"
mount -t xfs "$DEV" /mnt/fs
i=0
while [ $i -lt 6 ]; do
	cp /tmp/pattern /mnt/fs/f$i
	i=$((i + 1))
done
sync
umount /mnt/fs
echo 3 > /proc/sys/vm/drop_caches
hostrun xfs_repair -n "$DEV" || die "xfs_repair found errors after the writes"
mount -t xfs "$DEV" /mnt/fs
i=0
while [ $i -lt 6 ]; do
	got=$(md5sum < /mnt/fs/f$i | cut -d' ' -f1)
	[ "$got" = "$want" ] || die "XFS f$i reads back as $got, want $want"
	i=$((i + 1))
done
before=$(stat -c %b /tmp/xfs.img)
rm /mnt/fs/f*
# XFS keeps extents freed by rm "busy" until their log checkpoint is done,
# and fstrim skips busy extents: remount so that every freed extent is
# free (without it fstrim freed 33 of 96 MiB in one CI run).
umount /mnt/fs
mount -t xfs "$DEV" /mnt/fs
fstrim -v /mnt/fs
# Read the allocation only once the file system is unmounted: on 6.12 XFS's
# fstrim can return while its discards are still in flight (a CI run read
# 58 of 96 MiB freed right after fstrim, where other runs read 90), and
# unmount waits for them.
umount /mnt/fs
after=$(stat -c %b /tmp/xfs.img)
echo "XFS backing file: $before blocks allocated before fstrim, $after after"
echo "$before $after" > /mnt/host/alloc-xfs
hostrun xfs_repair -n "$DEV" || die "xfs_repair found errors after fstrim"
lb_stop
target_leftovers
