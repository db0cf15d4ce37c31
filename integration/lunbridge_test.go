package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestExportLoop exports a file with "lunbridge export" through tcm_loop,
// writes and reads 64 MiB of random data through /dev/sdX with O_DIRECT,
// checks the bytes in the backing file and the counters of the FUSE view,
// checks that a LUN RESET arrives as a TMR entry, and checks that shutdown
// leaves configfs as it was.
func TestExportLoop(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		Files: map[string]string{"lunbridge": lb},
		Script: lunbridgeLib + `
lb_start /tmp/lb --log-level debug export --size 64M --name disk0 /tmp/disk0.img
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no block device in lunbridge's output"
cat /sys/block/${DEV#/dev/}/queue/max_sectors_kb /sys/block/${DEV#/dev/}/size
# The 1 MiB default as the kernel sees it: the initiator's request size,
# the backstore's limit, and a data area that holds a queue of them.
A=$(ls -d /sys/kernel/config/target/core/user_*/*/attrib | head -n 1)
echo "max_sectors_kb $(cat /sys/block/${DEV#/dev/}/queue/max_sectors_kb)
hw_max_sectors $(cat $A/hw_max_sectors)
hw_queue_depth $(cat $A/hw_queue_depth)
max_data_area_mb $(cat $A/max_data_area_mb)" | tee /mnt/host/limits
cat /run/lunbridge/disk0/info
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
cp /run/lunbridge/disk0/stats /mnt/host/stats.before
dd if=/tmp/pattern of=$DEV bs=1M oflag=direct conv=fsync
dd if=$DEV of=/tmp/back bs=1M iflag=direct
cp /run/lunbridge/disk0/stats /mnt/host/stats.after
md5sum /tmp/pattern /tmp/back /tmp/disk0.img | tee /mnt/host/md5
# A LUN RESET reaches the ring as a TMR entry (tmr_notification=1); the
# disk keeps working after it.
hostrun sg_reset --device $DEV
n=0
until grep -q 'task management.*tmr=LUN_RESET' /tmp/lb.err; do
	n=$((n + 1)); [ $n -lt 100 ] || { cat /tmp/lb.err; die "no TMR entry for the LUN RESET"; }
	sleep 0.1
done
dd if=$DEV of=/dev/null bs=1M count=4 iflag=direct
lb_stop
md5sum /tmp/disk0.img >> /mnt/host/md5
target_leftovers
[ -z "$(ls /run/lunbridge 2>/dev/null)" ] || die "FUSE view still mounted"
`,
	})
	sums := md5s(t, filepath.Join(res.ShareDir, "md5"))
	if len(sums) != 4 {
		t.Fatalf("md5 file has %d sums, want 4: %v", len(sums), sums)
	}
	for i, s := range sums[1:] {
		if s != sums[0] {
			t.Errorf("md5 #%d = %s, want the pattern's %s (back, backing file, backing file after shutdown)", i+1, s, sums[0])
		}
	}
	before := readStats(t, filepath.Join(res.ShareDir, "stats.before"))
	after := readStats(t, filepath.Join(res.ShareDir, "stats.after"))
	const n = 64 << 20
	if got := after["write_bytes"] - before["write_bytes"]; got != n {
		t.Errorf("write_bytes grew by %d, want %d", got, n)
	}
	if got := after["read_bytes"] - before["read_bytes"]; got < n {
		t.Errorf("read_bytes grew by %d, want at least %d", got, n)
	}
	// bs=1M with O_DIRECT: one command per MiB at the 1 MiB default.
	if got := after["write_ops"] - before["write_ops"]; got != n>>20 {
		t.Errorf("write_ops grew by %d, want %d (one command per 1 MiB write)", got, n>>20)
	}
	lim := readStats(t, filepath.Join(res.ShareDir, "limits"))
	if lim["max_sectors_kb"] != 1024 || lim["hw_max_sectors"] != 2048 {
		t.Errorf("limits %v, want max_sectors_kb 1024 and hw_max_sectors 2048", lim)
	}
	if q, mb := lim["hw_queue_depth"], lim["max_data_area_mb"]; q == 0 || mb < q {
		t.Errorf("data area of %d MiB for a queue depth of %d: want room for a 1 MiB command per slot", mb, q)
	}
	if got := after["sync_ops"] - before["sync_ops"]; got < 1 {
		t.Errorf("sync_ops grew by %d, want at least 1 (conv=fsync)", got)
	}
}

// md5s reads the first field of each line of an md5sum output file.
func md5s(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// readStats parses a "key value" stats file; non-numeric values are skipped.
func readStats(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// TestKillRestart kills lunbridge with SIGKILL in the middle of a 64 MiB
// O_DIRECT write and restarts it within cmd_time_out: the new daemon adopts
// the TCMU device, the loopback LUN and the stale FUSE mount, the kernel's
// in-flight commands are retried (reset_ring BUSY), dd finishes without an
// error and every byte is in place. Then a write acknowledged after
// SYNCHRONIZE CACHE survives a second SIGKILL. A clean stop at the end
// leaves configfs as it was.
func TestKillRestart(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		Files: map[string]string{"lunbridge": lb},
		Script: lunbridgeLib + `
ARGS="export --size 64M --name disk0 /tmp/disk0.img"
lb_start /tmp/lb $ARGS
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no block device"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/pattern2 bs=1M count=4 2>/dev/null
# 4 KiB writes: 16384 commands, so the kill lands mid-write.
dd if=/tmp/pattern of=$DEV bs=4k oflag=direct conv=fsync 2>/tmp/dd.err &
DD=$!
n=0
until [ "$(stat_of /run/lunbridge/disk0/stats write_ops)" -ge 1000 ]; do
	n=$((n + 1)); [ $n -lt 1200 ] || die "the write did not start"
	sleep 0.05
done
kill -0 $DD || die "dd finished before the kill: make the write longer"
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
echo "killed lunbridge during the write"
sleep 1
lb_start /tmp/lb2 $ARGS
grep -q "adopting" /tmp/lb2.err || die "the restarted daemon did not adopt the device"
wait $DD || { cat /tmp/dd.err; die "dd failed across the restart"; }
dd if=$DEV of=/tmp/back bs=1M iflag=direct 2>/dev/null
md5sum /tmp/pattern /tmp/back /tmp/disk0.img | tee /mnt/host/md5
# Acknowledged after SYNCHRONIZE CACHE (conv=fsync), then SIGKILL.
dd if=/tmp/pattern2 of=$DEV bs=1M oflag=direct conv=fsync seek=8 2>/dev/null
kill -9 $LB_PID
wait $LB_PID 2>/dev/null || true
dd if=/tmp/disk0.img of=/tmp/region bs=1M skip=8 count=4 2>/dev/null
md5sum /tmp/pattern2 /tmp/region | tee /mnt/host/md5.sync
lb_start /tmp/lb3 $ARGS
lb_stop
target_leftovers
`,
	})
	sums := md5s(t, filepath.Join(res.ShareDir, "md5"))
	if len(sums) != 3 || sums[1] != sums[0] || sums[2] != sums[0] {
		t.Errorf("after the restart, md5 of pattern, device and backing file = %v, want all equal", sums)
	}
	sums = md5s(t, filepath.Join(res.ShareDir, "md5.sync"))
	if len(sums) != 2 || sums[1] != sums[0] {
		t.Errorf("synced write after SIGKILL: md5 of pattern and backing file region = %v, want equal", sums)
	}
}

// TestExportOnFUSE serves a backing file that lives on a FUSE mount in the
// guest (go-fuse's loopback, as sshfs or a distributed file system's client
// would be): 32 MiB of O_DIRECT writes and reads through /dev/sdX land in
// the file beneath the mount, and a discard (UNMAP) reads back as zeros.
func TestExportOnFUSE(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	loopfs := vmtest.BuildCommand(t, "./internal/cmd/loopfs")
	res := vmtest.Run(t, vmtest.Options{
		Files: map[string]string{"lunbridge": lb, "loopfs": loopfs},
		Script: lunbridgeLib + `
mkdir -p /tmp/under /tmp/fuse
/mnt/host/loopfs /tmp/under /tmp/fuse > /tmp/loopfs.out 2>&1 &
LOOPFS=$!
n=0
until grep -q mounted /tmp/loopfs.out; do
	n=$((n + 1)); [ $n -lt 300 ] || { cat /tmp/loopfs.out; die "loopfs did not mount"; }
	sleep 0.1
done
grep -q ' /tmp/fuse fuse' /proc/mounts || die "no FUSE mount at /tmp/fuse"
lb_start /tmp/lb export --size 32M --name onfuse /tmp/fuse/disk.img
DEV=$(lb_dev /tmp/lb onfuse)
[ -b "$DEV" ] || die "no block device"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=32 2>/dev/null
dd if=/tmp/pattern of=$DEV bs=1M oflag=direct conv=fsync
dd if=$DEV of=/tmp/back bs=1M iflag=direct
md5sum /tmp/pattern /tmp/back /tmp/under/disk.img | tee /mnt/host/md5
hostrun blkdiscard -o 0 -l 1048576 $DEV
dd if=$DEV of=/tmp/discarded bs=1M count=1 iflag=direct
dd if=/dev/zero of=/tmp/zeros bs=1M count=1
cmp /tmp/discarded /tmp/zeros || die "discarded range does not read back as zeros"
cmp -n 1048576 /tmp/under/disk.img /tmp/zeros || die "discarded range is not zero in the backing file"
cat /run/lunbridge/onfuse/stats > /mnt/host/stats
lb_stop
kill -TERM $LOOPFS
wait $LOOPFS
target_leftovers
`,
	})
	sums := md5s(t, filepath.Join(res.ShareDir, "md5"))
	if len(sums) != 3 || sums[1] != sums[0] || sums[2] != sums[0] {
		t.Errorf("md5 of pattern, device and the file under the FUSE mount = %v, want all equal", sums)
	}
	st := readStats(t, filepath.Join(res.ShareDir, "stats"))
	if st["unmap_ops"]+st["write_same_ops"] == 0 {
		t.Errorf("stats after blkdiscard: unmap_ops %d, write_same_ops %d; want a discard counted", st["unmap_ops"], st["write_same_ops"])
	}
}
