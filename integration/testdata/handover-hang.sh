# SPDX-License-Identifier: Apache-2.0
# Guest side of TestHandoverHungWrite (handover_test.go): two lunbridge
# gateways of one ALUA group export one file, lun.img, through tcm_loop,
# each through its own FUSE client of one directory (loopfs -locks, the
# owner's with -hang lun.img). A write to the owner is held inside its
# client (SIGUSR2), the owner is stopped with SIGTERM, and the other
# gateway must take over within the drain deadline, the validity and a
# poll or two, while the held write never completes GOOD; the writes
# acknowledged before and after must be in the file. Results go to
# /mnt/host/results as "key value" lines.

# now_ms: milliseconds since boot (busybox date has no %N).
now_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
result() { echo "$1 $2" | tee -a /mnt/host/results; }

client() { # client MOUNT [FLAGS...]: loopfs -locks of /tmp/shared; sets FS_PID
	_m=$1; shift
	mkdir -p "$_m"
	/mnt/host/loopfs -locks "$@" /tmp/shared "$_m" > "$_m.out" 2>&1 &
	FS_PID=$!
	wait_log "$_m.out" mounted
}

gateway() { # gateway OUT GROUP PEER DIR
	lb_start "$1" export --fabric loop --name "gw$2" --alua-identity shared \
		--alua-group "$2" --alua-peer "$3" --size 16M --mount '' --cmd-timeout 30s "$4/lun.img"
}

# wait_active DEV: until the kernel's ALUA handler sees DEV's port
# active/optimized. A TEST UNIT READY (SG_IO, which scsi_dh_alua does
# not block) collects the gateway's ASYMMETRIC ACCESS STATE CHANGED unit
# attention, on which scsi_dh_alua re-reads the port groups.
wait_active() {
	_s=/sys/block/${1#/dev/}/device/access_state
	_n=0
	until [ "$(cat $_s)" = active/optimized ]; do
		_n=$((_n + 1)); [ $_n -lt 150 ] || die "$1 stays $(cat $_s)"
		hostrun sg_turs "$1" > /dev/null 2>&1 || true
		sleep 0.2
	done
}

mkdir -p /etc/target/pr /tmp/shared
# No FUSE passthrough (Linux 6.12): through it the standby's client would
# map tmpfs pages beneath, which its takeover's page-cache check finds
# resident after FADV_DONTNEED and refuses (-hang keeps lun.img out of
# it on the owner's client anyway).
client /tmp/c1 -no-passthrough -hang lun.img
FS1=$FS_PID
client /tmp/c2 -no-passthrough
gateway /tmp/gw1 1 2 /tmp/c1
GW1=$LB_PID
wait_log /tmp/gw1.err 'lease: owner'
gateway /tmp/gw2 2 1 /tmp/c2
GW2=$LB_PID
D1=$(lb_dev /tmp/gw1 gw1)
D2=$(lb_dev /tmp/gw2 gw2)
[ -b "$D1" ] && [ -b "$D2" ] || die "no disks ($D1, $D2)"
wait_active "$D1"

# A: 1 MiB at 0, acknowledged by the owner.
dd if=/dev/urandom of=/tmp/a bs=1M count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=64k count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/c bs=1M count=1 2>/dev/null
dd if=/tmp/a of="$D1" bs=1M oflag=direct conv=fsync || die "write A through the owner failed"

# B: 64 KiB at 2 MiB, held inside the owner's file system client.
kill -USR2 $FS1
wait_log /tmp/c1.out 'holding writes'
dd if=/tmp/b of="$D1" bs=64k seek=32 oflag=direct > /tmp/ddb.out 2>&1 &
DDB=$!
wait_log /tmp/c1.out 'holding a write' 30
sleep 1
kill -0 $DDB 2>/dev/null || die "write B completed while held"

# Planned handover with the write still held.
t0=$(now_ms)
kill -TERM $GW1
wait_log /tmp/gw2.err 'lease: owner' 120
result takeover_ms $(( $(now_ms) - t0 ))
if grep -q 'drain timed out' /tmp/gw1.err; then result drain_timed_out 1; else result drain_timed_out 0; fi
if kill -0 $DDB 2>/dev/null; then result b_pending_at_takeover 1; else result b_pending_at_takeover 0; fi

# C: 1 MiB at 4 MiB, acknowledged by the new owner; A reads back.
wait_active "$D2"
dd if=/tmp/c of="$D2" bs=1M seek=4 oflag=direct conv=fsync || die "write C through the new owner failed"
dd if="$D2" of=/tmp/a.back bs=1M count=1 iflag=direct 2>/dev/null
dd if="$D2" of=/tmp/c.back bs=1M skip=4 count=1 iflag=direct 2>/dev/null
if cmp -s /tmp/a /tmp/a.back && cmp -s /tmp/c /tmp/c.back; then result read_back_ok 1; else result read_back_ok 0; fi

# Let the held write go on: it must fail (its after-check sees the fence).
kill -USR2 $FS1
_n=0
while kill -0 $DDB 2>/dev/null && [ $_n -lt 900 ]; do _n=$((_n + 1)); sleep 0.1; done
if kill -0 $DDB 2>/dev/null; then
	result b_rc pending
else
	rc=0; wait $DDB || rc=$?
	cat /tmp/ddb.out
	result b_rc $rc
fi
_n=0
while kill -0 $GW1 2>/dev/null && [ $_n -lt 600 ]; do _n=$((_n + 1)); sleep 0.1; done
if kill -0 $GW1 2>/dev/null; then
	result gw1_rc running
else
	rc=0; wait $GW1 || rc=$?
	result gw1_rc $rc
fi
grep -h 'lease:\|gateway' /tmp/gw1.err /tmp/gw2.err

# The file beneath both clients: A and C as acknowledged. Whether the held
# B reached the file after its release is reported, not required.
dd if=/tmp/shared/lun.img of=/tmp/a.file bs=1M count=1 2>/dev/null
dd if=/tmp/shared/lun.img of=/tmp/c.file bs=1M skip=4 count=1 2>/dev/null
dd if=/tmp/shared/lun.img of=/tmp/b.file bs=64k skip=32 count=1 2>/dev/null
if cmp -s /tmp/a /tmp/a.file && cmp -s /tmp/c /tmp/c.file; then result file_ok 1; else result file_ok 0; fi
if cmp -s /tmp/b /tmp/b.file; then result b_in_file 1; else result b_in_file 0; fi
kill -TERM $GW2
wait $GW2 || true
