# SPDX-License-Identifier: Apache-2.0
# Guest script of TestDebianPackage (lunbridgeLib is prepended): install
# the .deb with the host's dpkg (through hostrun) into an empty root in the
# guest, run the installed binary's --version, export a file from it, write
# and read the disk, and remove the package.
R=/tmp/pkgroot
mkdir -p $R/var/lib/dpkg/info $R/var/lib/dpkg/updates $R/var/log
: > $R/var/lib/dpkg/status
cp /mnt/host/lunbridge.deb /tmp/lunbridge.deb
hostrun dpkg --root=$R --log=/tmp/dpkg.log -i /tmp/lunbridge.deb || die "dpkg -i failed"
hostrun dpkg --root=$R -s lunbridge | tee /mnt/host/status.txt
hostrun dpkg --root=$R -L lunbridge > /mnt/host/files.txt

LB=$R/usr/sbin/lunbridge
$LB --version > /mnt/host/version.txt
# The unit starts the binary the package installed.
sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' $R/lib/systemd/system/lunbridge.service > /tmp/execstart
[ "$(cat /tmp/execstart)" = /usr/sbin/lunbridge ] || die "unit ExecStart: $(cat /tmp/execstart)"
[ -x "$R$(cat /tmp/execstart)" ] || die "unit ExecStart $(cat /tmp/execstart) is not in the package"
hostrun sh -c "MANPAGER=cat MANWIDTH=80 man -l $R/usr/share/man/man8/lunbridge.8.gz" > /mnt/host/man.txt

ip link set lo up
lb_start /tmp/lb export --metrics 127.0.0.1:9573 --size 8M --name pkgdisk /tmp/pkgdisk.img
DEV=$(lb_dev /tmp/lb pkgdisk)
[ -b "$DEV" ] || die "no device for pkgdisk"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
dd if=/tmp/pattern of=$DEV bs=1M oflag=direct 2>/dev/null
dd if=$DEV of=/tmp/back bs=1M iflag=direct 2>/dev/null
cmp /tmp/pattern /tmp/back || die "data read back differs"
wget -qO /mnt/host/metrics.txt http://127.0.0.1:9573/metrics || die "GET /metrics"
lb_stop
cmp /tmp/pattern /tmp/pkgdisk.img || die "backing file differs"

hostrun dpkg --root=$R --log=/tmp/dpkg.log -r lunbridge
[ -e $LB ] && die "dpkg -r left $LB"
target_leftovers
echo package-ok > /mnt/host/done.txt
