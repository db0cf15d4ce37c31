# SPDX-License-Identifier: Apache-2.0
cat > /tmp/lb.toml <<EOT
[[target]]
fabric = "loop"
  [[target.lun]]
  name = "keep"
  path = "/tmp/keep.img"
  size = "16M"
  [[target.lun]]
  name = "drop"
  path = "/tmp/drop.img"
  size = "8M"
EOT
lb_start /tmp/lb --log-level debug serve --config /tmp/lb.toml
KEEP=$(lb_dev /tmp/lb keep)
[ -b "$KEEP" ] && [ -b "$(lb_dev /tmp/lb drop)" ] || die "missing devices"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
dd if=/tmp/pattern of=$KEEP bs=1M oflag=direct conv=fsync 2>/dev/null
$LB list | tee /mnt/host/list.txt
$LB stats --json keep > /mnt/host/stats.json
$LB stats | tee /mnt/host/stats.txt
UPTIME1=$(stat_of /run/lunbridge/keep/stats uptime_seconds)

sed -i 's/name = "drop"/name = "added"/; s|/tmp/drop.img|/tmp/added.img|' /tmp/lb.toml
kill -HUP $LB_PID
n=0
until grep -q '^added: loop /dev/sd' /tmp/lb.out; do
	n=$((n + 1)); [ $n -lt 600 ] || { cat /tmp/lb.out /tmp/lb.err; die "reload did not add the new LUN"; }
	sleep 0.1
done
grep -q '^drop: removed' /tmp/lb.out || die "reload did not remove the dropped LUN"
[ -d /run/lunbridge/drop ] && die "the dropped LUN is still in the view"
[ -d /run/lunbridge/added ] || die "the added LUN is not in the view"
[ -d $CFG/core/user_0/drop ] && die "the dropped LUN's backstore is still in configfs"
[ "$(lb_dev /tmp/lb keep)" = "$KEEP" ] || die "the kept LUN changed device"
grep -c '^keep: loop' /tmp/lb.out | grep -qx 1 || die "the kept LUN was re-added"
UPTIME2=$(stat_of /run/lunbridge/keep/stats uptime_seconds)
[ "$UPTIME2" -ge "$UPTIME1" ] || die "the kept LUN was restarted"
dd if=$KEEP of=/tmp/back bs=1M iflag=direct 2>/dev/null
cmp /tmp/pattern /tmp/back || die "the kept LUN's data changed across the reload"
$LB list | tee /mnt/host/list2.txt
lb_stop

# Someone else's backstore of the same name: refused, left untouched.
mkdir -p $CFG/core/user_0/foreign
echo -n "dev_config=other/cfg,dev_size=1048576" > $CFG/core/user_0/foreign/control
if $LB export --size 1M --name foreign /tmp/foreign.img > /tmp/f.out 2> /tmp/f.err; then
	die "lunbridge took over someone else's backstore"
fi
cat /tmp/f.err
grep -q "not lunbridge's" /tmp/f.err || die "no clear error for someone else's backstore"
grep -q "other/cfg" $CFG/core/user_0/foreign/attrib/dev_config 2>/dev/null || cat $CFG/core/user_0/foreign/info
[ -d $CFG/core/user_0/foreign ] || die "someone else's backstore was removed"
rmdir $CFG/core/user_0/foreign
rmdir $CFG/core/user_0 2>/dev/null || true
target_leftovers
