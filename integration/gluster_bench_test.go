package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestGlusterBench runs the fio jobs of TestBenchFio (benchJobs) against a
// lunbridge LUN whose backing file is on the guest's replica-3 GlusterFS
// volume, and against a file of the same size on the volume itself, read
// and written by fio through the FUSE client: the ceiling a LUN on Gluster
// can reach. Both with O_DIRECT, libaio. It runs only with LUNBRIDGE_BENCH
// set, takes LUNBRIDGE_BENCH_RUNTIME, _RAMP, _SIZE_MB, _JOBS and _FLAGS
// like TestBenchFio, and logs a Markdown table (BENCHMARKS.md, "GlusterFS").
func TestGlusterBench(t *testing.T) {
	if os.Getenv("LUNBRIDGE_BENCH") == "" {
		t.Skip("set LUNBRIDGE_BENCH=1 to run the fio benchmark on GlusterFS")
	}
	vmtest.RequireTools(t, "fio")
	lib := glusterLib(t)
	c := benchConfigFromEnv(t)
	lb := vmtest.BuildLunbridge(t)
	targets := []benchTarget{{"lunbridge", "$DEV", "1"}, {"gluster-file", "$GV_INNER/raw.img", "1"}}
	var b strings.Builder
	fmt.Fprintf(&b, `
MB=%d RT=%d RAMP=%d
mkdir -p /tmp/bench
gluster_up
lb_start /tmp/lb export --size ${MB}M --name gv0 %s $GV/lun.img
DEV=$(lb_dev /tmp/lb gv0)
[ -b "$DEV" ] || die "no block device"
# Both files fully written first, so neither reads holes.
dd if=/dev/urandom of=$DEV bs=1M count=$MB oflag=direct conv=fsync 2>/dev/null
dd if=/dev/urandom of=$GV/raw.img bs=1M count=$MB conv=fsync 2>/dev/null
run() {
	_t=$1 _j=$2 _f=$3 _d=$4; shift 4
	hostrun fio --eta=never --name=$_j --filename=$_f --direct=$_d --ioengine=libaio \
		--size=${MB}M --time_based --runtime=$RT --ramp_time=$RAMP \
		--randrepeat=1 --randseed=20261125 --norandommap --group_reporting \
		--output-format=json --output=/tmp/bench/$_t.$_j.json "$@" ||
		die "fio $_j on $_t ($_f) failed"
	cp /tmp/bench/$_t.$_j.json /mnt/host/bench/
	echo "bench: $_j on $_t done"
}
mkdir -p /mnt/host/bench
`, c.sizeMB, c.runtime, c.ramp, c.lbFlags)
	for _, j := range c.jobs {
		for _, tg := range targets {
			fmt.Fprintf(&b, "run %s %s %s %s %s\n", tg.name, j.name, tg.file, tg.direct, j.args)
		}
	}
	b.WriteString("lb_stop\n")
	runs := len(c.jobs) * len(targets)
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: glusterMemoryMB,
		Timeout:  5*time.Minute + time.Duration(runs*(c.runtime+c.ramp+10))*time.Second,
		Files:    map[string]string{"lunbridge": lb},
		Script:   lunbridgeLib + lib + b.String(),
	})
	dir := filepath.Join(res.ShareDir, "bench")
	var tab strings.Builder
	fmt.Fprintf(&tab, "| job | LUN on Gluster IOPS | MiB/s | p99 µs | Gluster file IOPS | MiB/s | p99 µs | LUN/file |\n|---|---|---|---|---|---|---|---|\n")
	for _, j := range c.jobs {
		lun, err := readOne(dir, "lunbridge", j.name)
		if err != nil {
			t.Fatal(err)
		}
		file, err := readOne(dir, "gluster-file", j.name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&tab, "| %s | %.0f | %.1f | %.0f | %.0f | %.1f | %.0f | %.2f |\n", j.name,
			lun.IOPS, lun.MiBps, lun.P99us, file.IOPS, file.MiBps, file.P99us, lun.IOPS/file.IOPS)
	}
	t.Logf("GlusterFS (replica 3 in the guest), %d MiB, %d s per run after %d s ramp:\n%s", c.sizeMB, c.runtime, c.ramp, tab.String())
}
