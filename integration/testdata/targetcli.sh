# SPDX-License-Identifier: Apache-2.0
# Guest script of TestTargetcli (lunbridgeLib is prepended). Debian's
# targetcli-fb and targetctl (the host's, through hostrun) create, map,
# save and restore a user:lunbridge backstore that "lunbridge serve"
# validates over D-Bus and serves, next to a LUN of its own config.
# Results for the Go side go to /mnt/host.
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket
export TARGETCLI_HOME=/tmp/targetcli-home
# hostrun binds /sys without its submounts: give the chroot configfs too.
mount --bind /sys/kernel/config /hostroot/sys/kernel/config
mkdir -p /run/dbus /etc/target/pr
cp /mnt/host/dbus-lunbridge.conf /mnt/host/targetcli-bus.conf /tmp/
hostrun dbus-daemon --config-file=/tmp/targetcli-bus.conf --nofork --nopidfile > /tmp/dbus.log 2>&1 &
DBUS_PID=$!
n=0
until [ -S /run/dbus/system_bus_socket ]; do
	n=$((n + 1)); [ $n -lt 100 ] || { cat /tmp/dbus.log; die "dbus-daemon did not start"; }
	sleep 0.1
done

tc() { hostrun targetcli "$@"; }
# disks: the sd disks now present.
disks() { ls /sys/block | grep '^sd' || true; }
# new_disk BEFORE: wait for a disk not in the list BEFORE, print /dev/sdX.
new_disk() {
	_n=0
	while :; do
		for _d in $(disks); do
			echo "$1" | grep -qx "$_d" || { echo "/dev/$_d"; return 0; }
		done
		_n=$((_n + 1)); [ $_n -lt 100 ] || die "no new disk (had: $1)"
		sleep 0.1
	done
}
# wait_log TEXT: wait until lunbridge logged TEXT.
wait_log() {
	_n=0
	until grep -q "$1" /tmp/lb.err; do
		_n=$((_n + 1)); [ $_n -lt 100 ] || { cat /tmp/lb.err; die "lunbridge never logged $1"; }
		sleep 0.1
	done
}

cat > /tmp/lb.toml <<EOT
mount = ""
[[target]]
  [[target.lun]]
  name = "own0"
  path = "/tmp/own0.img"
  size = "16M"
EOT
lb_start /tmp/lb --log-level debug serve --config /tmp/lb.toml
OWN=$(lb_dev /tmp/lb own0)
[ -b "$OWN" ] || die "no device for own0"
wait_log 'offering user:lunbridge on D-Bus'

# targetcli lists the handler, shows its ConfigDesc, and creation goes
# through lunbridge's CheckConfig: a relative path is refused.
tc /backstores ls > /mnt/host/backstores.txt
tc /backstores/user:lunbridge help create > /mnt/host/help.txt
if tc /backstores/user:lunbridge create name=bad size=64M cfgstring=relative.img > /mnt/host/bad.txt 2>&1; then
	die "targetcli created a backstore with a relative cfgstring"
fi
tc /backstores/user:lunbridge create name=disk1 size=64M cfgstring=/tmp/disk1.img
wait_log 'targetcli: serving backstore'
BEFORE=$(disks)
tc /loopback create naa.5001405000000011
tc /loopback/naa.5001405000000011/luns create /backstores/user:lunbridge/disk1
DEV=$(new_disk "$BEFORE")
echo "disk1 is $DEV"
cat /sys/block/${DEV#/dev/}/size > /mnt/host/sectors.txt

# Write and read through the disk; the bytes land in the backing file.
hostrun dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 status=none
hostrun dd if=/tmp/pattern of="$DEV" bs=1M seek=1 oflag=direct status=none
hostrun dd if="$DEV" of=/tmp/back bs=1M skip=1 count=4 iflag=direct status=none
hostrun dd if=/tmp/disk1.img of=/tmp/infile bs=1M skip=1 count=4 status=none
# The LUN of lunbridge's own config keeps working alongside.
hostrun dd if=/tmp/pattern of="$OWN" bs=1M oflag=direct status=none
hostrun dd if="$OWN" of=/tmp/ownback bs=1M count=4 iflag=direct status=none
md5sum /tmp/pattern /tmp/back /tmp/infile /tmp/ownback > /mnt/host/md5-before.txt

# Drop the own LUN (SIGHUP, empty config), so the saved configuration
# holds only targetcli's objects.
printf 'mount = ""\n' > /tmp/lb.toml
kill -HUP $LB_PID
n=0
until grep -q '^own0: removed' /tmp/lb.out; do
	n=$((n + 1)); [ $n -lt 300 ] || die "reload did not remove own0"
	sleep 0.1
done
tc saveconfig savefile=/tmp/saveconfig.json
cp /tmp/saveconfig.json /mnt/host/

# Stop lunbridge: the backstore stays (targetcli's). Delete the disk first
# while served (sd syncs its cache on removal), then clear configfs.
echo 1 > /sys/block/${DEV#/dev/}/device/delete
lb_stop
ls -d $CFG/core/user_*/disk1 > /mnt/host/after-stop.txt || true
hostrun targetctl clear
target_leftovers

# Start lunbridge, restore: the restored backstore is served again and the
# data is still there.
lb_start /tmp/lb --log-level debug serve --config /tmp/lb.toml
BEFORE=$(disks)
hostrun targetctl restore /tmp/saveconfig.json
DEV=$(new_disk "$BEFORE")
echo "restored disk1 is $DEV"
hostrun dd if="$DEV" of=/tmp/back2 bs=1M skip=1 count=4 iflag=direct status=none
md5sum /tmp/pattern /tmp/back2 > /mnt/host/md5-after.txt

# As at boot: targetctl restore runs before lunbridge. Linking the LUN
# blocks (the kernel's SCSI scan waits in the unserved ring) until
# lunbridge starts, finds the backstore and serves it.
echo 1 > /sys/block/${DEV#/dev/}/device/delete
lb_stop
hostrun targetctl clear
target_leftovers
BEFORE=$(disks)
hostrun targetctl restore /tmp/saveconfig.json > /tmp/restore.out 2>&1 &
R_PID=$!
sleep 2
lb_start /tmp/lb --log-level debug serve --config /tmp/lb.toml
wait $R_PID || { cat /tmp/restore.out; die "targetctl restore before lunbridge failed"; }
DEV=$(new_disk "$BEFORE")
echo "disk1 restored before lunbridge is $DEV"
hostrun dd if="$DEV" of=/tmp/back3 bs=1M skip=1 count=4 iflag=direct status=none
md5sum /tmp/pattern /tmp/back3 > /mnt/host/md5-boot.txt

# targetcli deletes it: lunbridge lets it go (REMOVED_DEVICE).
tc /loopback delete naa.5001405000000011
tc /backstores/user:lunbridge delete disk1
wait_log 'targetcli: backstore removed; no longer served'

# Another handler's backstore (tcmu-runner's "file/" subtype, made here by
# hand in configfs) is left alone: after its netlink announcement and at
# least one rescan (every 5 s), its UIO device is still free to open. The same
# open of disk3's UIO, which lunbridge serves, is refused (EBUSY): the
# check would see a lunbridge that took the device.
tc /backstores/user:lunbridge create name=disk3 size=16M cfgstring=/tmp/disk3.img
wait_log 'lun=disk3'
F=$CFG/core/user_9/foreign
mkdir -p $F
echo -n "dev_config=file//tmp/foreign.img,dev_size=1048576,nl_reply_supported=-1" > $F/control
echo 1 > $F/enable
sleep 6
uio_of() { grep -l "^tcm-user/[0-9]*/$1/" /sys/class/uio/uio*/name | cut -d/ -f5; }
try_open() {
	hostrun python3 -c "import os,sys; os.open(sys.argv[1], os.O_RDWR)" "/dev/$1" 2>&1 && echo opened
}
echo "foreign $(try_open $(uio_of foreign))" > /mnt/host/uio-open.txt
echo "disk3 $(try_open $(uio_of disk3))" >> /mnt/host/uio-open.txt
cat /mnt/host/uio-open.txt
rmdir $F $CFG/core/user_9
tc /backstores/user:lunbridge delete disk3
lb_stop
kill $DBUS_PID
cp /tmp/lb.err /mnt/host/lb.err
target_leftovers
