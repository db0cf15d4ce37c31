# SPDX-License-Identifier: Apache-2.0
# Guest script of TestSG3 (sg3_test.go; lunbridgeLib is prepended). It
# exports $SIZE bytes through tcm_loop with --max-transfer $MAX_TRANSFER
# and runs the guest half of $TEST (the test binary, through hostrun, so
# sg3-utils and sdparm come from the host) on the disk; then the
# conformance suite again on a disk of 4096-byte blocks. The variable
# names LUNBRIDGE_GUEST_HALF and LUNBRIDGE_SG3_* are guestHalfEnv and
# sg3*Env of the Go side.
lb_start /tmp/lb export --size "$SIZE" --max-transfer "$MAX_TRANSFER" --name disk0 /tmp/disk0.img
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no block device in lunbridge's output"
# The FUSE mount under /run does not propagate into hostrun's chroot.
cp /run/lunbridge/disk0/info /tmp/disk0.info
rc=0
LUNBRIDGE_GUEST_HALF=$TEST LUNBRIDGE_SG3_DEV=$DEV LUNBRIDGE_SG3_FILE=/tmp/disk0.img LUNBRIDGE_SG3_INFO=/tmp/disk0.info \
	hostrun /mnt/integration.test -test.run "^$TEST\$" -test.v -test.count=1 || rc=$?
dmesg > /mnt/host/dmesg.txt
lb_stop
# The conformance suite again, on a disk of 4096-byte logical blocks.
lb_start /tmp/lb4k export --size "$SIZE" --block-size 4096 --name disk4k /tmp/disk4k.img
DEV=$(lb_dev /tmp/lb4k disk4k)
[ -b "$DEV" ] || die "no block device in lunbridge's output"
LUNBRIDGE_GUEST_HALF=$TEST LUNBRIDGE_SG3_DEV=$DEV \
	hostrun /mnt/integration.test -test.run "^$TEST\$/^blocktest\$" -test.v -test.count=1 || rc=$?
lb_stop
target_leftovers
exit $rc
