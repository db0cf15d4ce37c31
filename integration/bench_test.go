package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestBenchFio compares lunbridge with LIO's in-kernel fileio backstore and
// with the backing file itself, side by side in one boot of the harness VM:
// every fio job runs against each target in turn before the next job, all
// on the same tmpfs, so host noise hits the targets alike. It writes a
// table (IOPS, MiB/s, p50/p99 completion latency, guest CPU per I/O,
// lunbridge's own CPU per I/O and RSS, ratios) to bench-out/ and the test
// log. It runs only with LUNBRIDGE_BENCH set (scripts/bench.sh) and asserts
// only that fio ran without errors and measured something: the numbers are
// reported, never judged.
//
// Knobs (environment):
//
//	LUNBRIDGE_BENCH_RUNTIME  seconds per job and target (default 10, at least 4)
//	LUNBRIDGE_BENCH_RAMP     fio ramp_time seconds (default 2)
//	LUNBRIDGE_BENCH_SIZE_MB  size of each target (default 256)
//	LUNBRIDGE_BENCH_JOBS     comma-separated job names to run (default all)
//	LUNBRIDGE_BENCH_TARGETS  comma-separated targets to run (default all)
//	LUNBRIDGE_BENCH_FLAGS    extra "lunbridge export" flags, e.g. "--workers 8"
//	LUNBRIDGE_BENCH_BASELINE path of another lunbridge binary (e.g. built
//	                         from the previous commit): adds the target
//	                         "baseline", served by it with the same flags,
//	                         so that an optimisation is measured side by
//	                         side with what it replaces
//	LUNBRIDGE_BENCH_BASELINE_FLAGS  the baseline's extra export flags
//	                         (default: LUNBRIDGE_BENCH_FLAGS); with the
//	                         same binary as baseline, compares flags
//	LUNBRIDGE_BENCH_PERF     if set, profile the whole guest (kernel and
//	                         lunbridge) with the host's perf during the
//	                         sampling window of the lunbridge and fileio
//	                         runs; reports land next to the results. perf
//	                         costs CPU: do not compare numbers of such runs.
//	LUNBRIDGE_BENCH_FTRACE   if set, time the kernel functions of the data
//	                         path (benchFtraceFuncs) with ftrace's
//	                         function_graph tracer for 2 s of the sampling
//	                         window of the lunbridge and fileio runs, and
//	                         write calls, total and mean time per function
//	                         next to the results (perf in a TCG guest
//	                         cannot attribute time inside code that runs
//	                         with interrupts off). Costs CPU too.
//	LUNBRIDGE_BENCH_CLOCK    the guest's clocksource: "tsc" (default: boots
//	                         with clocksource=tsc tsc=reliable, so clock
//	                         reads are vDSO calls as on real machines) or
//	                         "default" (the kernel's choice under TCG,
//	                         hpet: every clock read is a system call and
//	                         an emulated HPET access, which weighs on the
//	                         Go runtime and on fio alike)
//	LUNBRIDGE_BENCH_OUT      output directory (default <repo>/bench-out)
func TestBenchFio(t *testing.T) {
	if os.Getenv("LUNBRIDGE_BENCH") == "" {
		t.Skip("set LUNBRIDGE_BENCH=1 to run the fio benchmark (scripts/bench.sh)")
	}
	cfg := benchConfigFromEnv(t)
	files := map[string]string{"lunbridge": vmtest.BuildLunbridge(t)}
	if cfg.baseline != "" {
		files["lunbridge-base"] = cfg.baseline
	}
	perRun := time.Duration(cfg.runtime+cfg.ramp+15) * time.Second
	var ftraceTime time.Duration
	if cfg.ftrace {
		// Formatting and summing a 2 s trace takes minutes in the
		// emulated guest.
		ftraceTime = time.Duration(len(cfg.jobs)*len(cfg.targets)) * 5 * time.Minute
	}
	res := vmtest.Run(t, vmtest.Options{
		Files:      files,
		Script:     lunbridgeLib + benchScript(cfg),
		MemoryMB:   2048 + 4*cfg.sizeMB,
		NoTrace:    true,
		KernelArgs: cfg.kernelArgs,
		Timeout:    5*time.Minute + time.Duration(len(cfg.jobs)*len(cfg.targets))*perRun + ftraceTime,
	})
	rep, err := readBench(filepath.Join(res.ShareDir, "bench"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.IOPS <= 0 || r.IOs <= 0 {
			t.Errorf("%s on %s: fio measured %.0f IOPS over %d I/Os, want some", r.Job, r.Target, r.IOPS, r.IOs)
		}
	}
	table := rep.markdown()
	t.Logf("\n%s", table)
	out := os.Getenv("LUNBRIDGE_BENCH_OUT")
	if out == "" {
		root, err := vmtest.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		out = filepath.Join(root, "bench-out")
	}
	if err := rep.save(out, filepath.Join(res.ShareDir, "bench")); err != nil {
		t.Fatal(err)
	}
}

// benchJob is one fio workload; args are added to the common fio flags.
type benchJob struct {
	name string
	args string
}

// benchJobs are the workloads of the issue: sequential 1 MiB at QD8, random
// 4 KiB at QD32 (throughput) and QD1 (latency).
var benchJobs = []benchJob{
	{"seq-read-1M-qd8", "--rw=read --bs=1M --iodepth=8"},
	{"seq-write-1M-qd8", "--rw=write --bs=1M --iodepth=8"},
	{"rand-read-4k-qd32", "--rw=randread --bs=4k --iodepth=32"},
	{"rand-write-4k-qd32", "--rw=randwrite --bs=4k --iodepth=32"},
	{"rand-read-4k-qd1", "--rw=randread --bs=4k --iodepth=1"},
}

// benchTargets are what each job runs against, in this order. The shell
// variables are set by benchScript: each target's fio --filename and
// --direct value.
var benchTargets = []benchTarget{
	{"lunbridge", "$LB_DEV", "1"},
	{"fileio", "$FIO_DEV", "1"},     // fd_buffered_io=0: O_DSYNC, WCE=0
	{"fileio-wb", "$FIOB_DEV", "1"}, // fd_buffered_io=1: page cache, WCE=1
	// The file itself: tmpfs has no O_DIRECT before Linux 6.6, so buffered;
	// on tmpfs that is the same memory copy without a cache to bypass.
	{"raw", "/tmp/raw.img", "0"},
}

// benchFtraceFuncs are the kernel functions LUNBRIDGE_BENCH_FTRACE times:
// TCMU's submission and completion (with their copies between the command's
// scatterlist and the data area), the data-area page fault, fileio's I/O,
// tmpfs reads and writes, and the system calls lunbridge makes per command.
// Nothing called per page: tracing those costs more than the copies.
// Names the running kernel cannot trace (inlined) are reported and skipped.
var benchFtraceFuncs = []string{
	"tcmu_queue_cmd", "queue_cmd_ring", "tcmu_irqcontrol", "tcmu_handle_completion",
	"tcmu_copy_data", "tcmu_vma_fault", "tcmu_get_empty_blocks", "run_qfull_queue",
	"fd_execute_rw", "fd_do_rw",
	"shmem_file_read_iter", "generic_file_write_iter",
	"__x64_sys_preadv", "__x64_sys_pwritev", "__x64_sys_pread64", "__x64_sys_pwrite64",
	"__x64_sys_write", "__x64_sys_read", "__x64_sys_futex", "__x64_sys_epoll_pwait",
	"__x64_sys_nanosleep", "__x64_sys_clock_gettime", "__x64_sys_io_submit", "__x64_sys_io_getevents",
	"tcm_loop_queuecommand", "target_complete_cmd", "blkdev_direct_IO",
	"uio_read", "uio_write", "uio_poll",
}

type benchTarget struct {
	name, file, direct string
}

type benchConfig struct {
	runtime, ramp, sizeMB int
	jobs                  []benchJob
	targets               []benchTarget
	lbFlags               string
	perf                  bool
	ftrace                bool
	kernelArgs            string
	baseline              string // host path of the baseline binary, or ""
	baseFlags             string
}

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	num := func(key string, def, min int) int {
		v := os.Getenv(key)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			t.Fatalf("%s=%q: want an integer of at least %d", key, v, min)
		}
		return n
	}
	c := benchConfig{
		runtime:  num("LUNBRIDGE_BENCH_RUNTIME", 10, 4),
		ramp:     num("LUNBRIDGE_BENCH_RAMP", 2, 0),
		sizeMB:   num("LUNBRIDGE_BENCH_SIZE_MB", 256, 16),
		lbFlags:  os.Getenv("LUNBRIDGE_BENCH_FLAGS"),
		jobs:     benchJobs,
		targets:  benchTargets,
		perf:     os.Getenv("LUNBRIDGE_BENCH_PERF") != "",
		ftrace:   os.Getenv("LUNBRIDGE_BENCH_FTRACE") != "",
		baseline: os.Getenv("LUNBRIDGE_BENCH_BASELINE"),
	}
	c.baseFlags = c.lbFlags
	if f, ok := os.LookupEnv("LUNBRIDGE_BENCH_BASELINE_FLAGS"); ok {
		c.baseFlags = f
	}
	for _, f := range []string{c.lbFlags, c.baseFlags} {
		if strings.ContainsAny(f, "'\"`$;&|<>\\") {
			t.Fatalf("lunbridge flags %q: plain flags only", f)
		}
	}
	if sel := os.Getenv("LUNBRIDGE_BENCH_JOBS"); sel != "" {
		c.jobs = nil
		for _, name := range strings.Split(sel, ",") {
			found := false
			for _, j := range benchJobs {
				if j.name == strings.TrimSpace(name) {
					c.jobs = append(c.jobs, j)
					found = true
				}
			}
			if !found {
				t.Fatalf("LUNBRIDGE_BENCH_JOBS: unknown job %q", name)
			}
		}
	}
	if sel := os.Getenv("LUNBRIDGE_BENCH_TARGETS"); sel != "" {
		c.targets = nil
		for _, name := range strings.Split(sel, ",") {
			found := false
			for _, tg := range benchTargets {
				if tg.name == strings.TrimSpace(name) {
					c.targets = append(c.targets, tg)
					found = true
				}
			}
			if !found {
				t.Fatalf("LUNBRIDGE_BENCH_TARGETS: unknown target %q", name)
			}
		}
	}
	if c.baseline != "" {
		if _, err := os.Stat(c.baseline); err != nil {
			t.Fatalf("LUNBRIDGE_BENCH_BASELINE: %v", err)
		}
		// Right after lunbridge, so that the two meet the same conditions.
		if c.targets[0].name != "lunbridge" {
			t.Fatal("LUNBRIDGE_BENCH_BASELINE needs the lunbridge target")
		}
		c.targets = append([]benchTarget{c.targets[0], {"baseline", "$BASE_DEV", "1"}}, c.targets[1:]...)
	}
	if c.perf {
		vmtest.RequireTools(t, "perf")
	}
	switch clock := os.Getenv("LUNBRIDGE_BENCH_CLOCK"); clock {
	case "", "tsc":
		c.kernelArgs = "clocksource=tsc tsc=reliable"
	case "default":
	default:
		t.Fatalf("LUNBRIDGE_BENCH_CLOCK=%q: want tsc or default", clock)
	}
	if c.ftrace && c.runtime < 5 {
		t.Fatal("LUNBRIDGE_BENCH_FTRACE needs LUNBRIDGE_BENCH_RUNTIME of at least 5")
	}
	return c
}

// benchScript is the guest side. Each fio run is sampled by a background
// subshell inside its steady state (from ramp+1 s to runtime+ramp-1 s after
// the start): /proc/stat and /proc/uptime for the whole guest's busy time,
// lunbridge's /proc/PID/stat and status for its own CPU time and RSS. The
// results go to /tmp/res and are copied to the share at the end, so the 9p
// share is quiet while fio runs.
func benchScript(c benchConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "RT=%d RAMP=%d MB=%d\n", c.runtime, c.ramp, c.sizeMB)
	if c.perf {
		b.WriteString("PERF=1\n")
	}
	if c.ftrace {
		fmt.Fprintf(&b, "FTRACE_FUNCS='%s'\n", strings.Join(benchFtraceFuncs, " "))
	}
	b.WriteString(`
# Run lunbridge from the guest's /tmp, which the hostrun chroot shares, so
# that perf finds its symbols by the same path.
cp /mnt/host/lunbridge /tmp/lunbridge
LB=/tmp/lunbridge
R=/tmp/res
mkdir -p $R
# tmpfs holds the four backing files.
mount -o remount,size=$((MB * 5 + 256))m /tmp
for f in lb base fileio fileiob raw; do
	dd if=/dev/zero of=/tmp/$f.img bs=1M count=$MB 2>/dev/null
done
SZ=$((MB << 20))

`)
	fmt.Fprintf(&b, "lb_start /tmp/lb --log-level warn export --mount= %s --name bench /tmp/lb.img\n", c.lbFlags)
	b.WriteString(`LB_DEV=$(lb_dev /tmp/lb bench)
[ -b "$LB_DEV" ] || die "no block device in lunbridge's output"
BASE_PID=$LB_PID
`)
	if c.baseline != "" {
		// lb_start again: LB_PID and LB_OUT become the baseline's, then
		// are put back. lunbridge's own tcm_loop target has one fixed
		// name per machine, so the baseline serves its TCMU device with
		// no fabric and the script exports it on another target.
		fmt.Fprintf(&b, `cp /mnt/host/lunbridge-base /tmp/lunbridge-base
_pid=$LB_PID
LB=/tmp/lunbridge-base
lb_start /tmp/base --log-level warn export --mount= --fabric none %s --name base /tmp/base.img
LB=/tmp/lunbridge
BASE_PID=$LB_PID
BASE_DEV=$(loop_export 5001405000000b30 "$(ls -d $CFG/core/user_*/base)")
[ -b "$BASE_DEV" ] || die "no block device for the baseline"
LB_PID=$_pid LB_OUT=/tmp/lb
`, c.baseFlags)
	}
	b.WriteString(`D1=$(fileio_create bfileio /tmp/fileio.img $SZ)
FIO_DEV=$(loop_export 5001405000000b10 "$D1")
D2=$(fileio_create bfileiowb /tmp/fileiob.img $SZ fd_buffered_io=1)
FIOB_DEV=$(loop_export 5001405000000b20 "$D2")

# What the kernel made of each device.
{
	echo "kernel $(uname -r)"
	echo "nproc $(nproc)"
	echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	echo "lunbridge_flags $(tr '\000' ' ' < /proc/$LB_PID/cmdline)"
	echo "baseline_flags $(tr '\000' ' ' < /proc/$BASE_PID/cmdline)"
	for d in $LB_DEV ${BASE_DEV:-} $FIO_DEV $FIOB_DEV; do
		q=/sys/block/${d#/dev/}/queue
		echo "$d max_sectors_kb=$(cat $q/max_sectors_kb) max_hw_sectors_kb=$(cat $q/max_hw_sectors_kb) nr_requests=$(cat $q/nr_requests) scheduler=$(cat $q/scheduler | tr ' ' ,) queue_depth=$(cat /sys/block/${d#/dev/}/device/queue_depth)"
	done
	for a in /sys/kernel/config/target/core/user_*/*/attrib /sys/kernel/config/target/core/fileio_0/*/attrib; do
		echo "$a hw_max_sectors=$(cat $a/hw_max_sectors) hw_queue_depth=$(cat $a/hw_queue_depth) emulate_write_cache=$(cat $a/emulate_write_cache)"
	done
} > $R/env
cat $R/env

# sample FILE: the guest's CPU counters and lunbridge's CPU time and RSS.
sample() {
	{
		head -1 /proc/stat
		echo "uptime $(cut -d' ' -f1 /proc/uptime)"
		echo "lbstat $(cat /proc/$LB_PID/stat)"
		grep -E '^Vm(RSS|HWM):' /proc/$LB_PID/status
		echo "basestat $(cat /proc/$BASE_PID/stat)"
		grep -E '^VmRSS:' /proc/$BASE_PID/status | sed 's/^/base/' 
	} > "$1"
}
sample $R/idle

# ftrace_window SECONDS: trace FTRACE_FUNCS with function_graph for that
# long and print, per function, the calls, the total and the mean time in
# microseconds (nested traced functions count in their callers' time too).
ftrace_window() {
	_tr=/sys/kernel/tracing
	[ -e $_tr/trace ] || mount -t tracefs nodev $_tr
	echo 0 > $_tr/tracing_on
	echo nop > $_tr/current_tracer
	: > $_tr/set_ftrace_filter
	for _fn in $FTRACE_FUNCS; do
		echo $_fn >> $_tr/set_ftrace_filter 2>/dev/null || echo "# not traceable: $_fn"
	done
	echo 32768 > $_tr/buffer_size_kb
	echo function_graph > $_tr/current_tracer
	echo funcgraph-tail > $_tr/trace_options
	echo nofuncgraph-irqs > $_tr/trace_options
	echo nosleep-time > $_tr/trace_options
	: > $_tr/trace
	echo 1 > $_tr/tracing_on
	sleep $1
	echo 0 > $_tr/tracing_on
	echo "# window $1 s; lost events: $(grep -h overrun $_tr/per_cpu/cpu*/stats | awk '{s += $2} END {print s}')"
	echo "# function calls total_us mean_us"
	# A line ends a call when it carries a duration: "fn();" (a leaf) or
	# "} /* fn */" (funcgraph-tail).
	awk -F'|' 'NF >= 2 && $1 ~ /us/ {
		d = $1; gsub(/[^0-9.]/, " ", d); n = split(d, a, " "); us = a[n] + 0
		f = $2; gsub(/[ ;{}()*\/]/, "", f)
		if (f == "") next
		c[f]++; t[f] += us
	} END { for (f in c) printf "%s %d %.0f %.1f\n", f, c[f], t[f], t[f] / c[f] }' $_tr/trace | sort -k3 -n -r
	echo nop > $_tr/current_tracer
	: > $_tr/set_ftrace_filter
	echo 1408 > $_tr/buffer_size_kb
}

# run TARGET JOB FILE DIRECT FIO_ARGS...
run() {
	_t=$1 _j=$2 _f=$3 _d=$4
	shift 4
	(
		sleep $((RAMP + 1))
		sample $R/$_t.$_j.pre
		case "$PERF,${FTRACE_FUNCS:+1},$_t" in
		1,*,lunbridge|1,*,fileio)
			hostrun perf record -q -a -g -F 499 -o /tmp/perf.$_t.$_j -- sleep $((RT - 2)) > /dev/null 2>&1 ;;
		*,1,lunbridge|*,1,fileio|*,1,baseline)
			ftrace_window 2 > $R/ftrace.$_t.$_j.txt
			sed "s/^/ftrace $_t $_j: /" $R/ftrace.$_t.$_j.txt | head -24
			sleep $((RT - 4)) ;;
		*)
			sleep $((RT - 2)) ;;
		esac
		sample $R/$_t.$_j.post
	) &
	_s=$!
	hostrun fio --eta=never --name=$_j --filename=$_f --direct=$_d --ioengine=libaio \
		--size=${MB}M --time_based --runtime=$RT --ramp_time=$RAMP \
		--randrepeat=1 --randseed=20261125 --norandommap --group_reporting \
		--output-format=json --output=$R/$_t.$_j.json "$@" ||
		die "fio $_j on $_t ($_f) failed"
	wait $_s
	echo "bench: $_j on $_t done"
}

`)
	for _, j := range c.jobs {
		for _, tg := range c.targets {
			fmt.Fprintf(&b, "run %s %s %s %s %s\n", tg.name, j.name, tg.file, tg.direct, j.args)
		}
	}
	b.WriteString(`
sample $R/end
for p in /tmp/perf.*; do
	[ -e "$p" ] || continue
	hostrun perf report -i $p --stdio --no-children --sort comm,dso,symbol --percent-limit 0.7 -g none > $R/${p#/tmp/}.txt 2>&1 || true
	hostrun perf report -i $p --stdio --no-children --sort comm --percent-limit 0.5 -g none > $R/${p#/tmp/}.comm.txt 2>&1 || true
	hostrun perf report -i $p --stdio --no-children --sort symbol --percent-limit 4 -g caller,2,callee,function,percent > $R/${p#/tmp/}.calls.txt 2>&1 || true
done
if [ $BASE_PID != $LB_PID ]; then
	loop_unexport 5001405000000b30
	kill -TERM $BASE_PID
	wait $BASE_PID || die "baseline lunbridge exited with $?"
fi
lb_stop
loop_unexport 5001405000000b10
loop_unexport 5001405000000b20
fileio_remove bfileio
fileio_remove bfileiowb
target_leftovers
cp -r $R /mnt/host/bench
`)
	return b.String()
}

// benchResult is one job on one target.
type benchResult struct {
	Job, Target string
	IOPS        float64
	MiBps       float64
	P50us       float64 // completion latency percentiles, µs
	P99us       float64
	IOs         int64   // I/Os fio counted (ramp excluded)
	Sampled     bool    // the CPU and RSS fields below were measured
	CPUusPerIO  float64 // guest busy CPU time per I/O, µs
	LBusPerIO   float64 // lunbridge's own CPU time per I/O, µs (lunbridge only)
	LBRSSKiB    int64   // lunbridge's VmRSS at the end of the window (lunbridge only)
}

// benchReport is a whole run.
type benchReport struct {
	Date       string
	Env        string
	Config     map[string]any
	IdleRSSKiB int64
	PeakRSSKiB int64 // VmHWM at the end
	Results    []benchResult
}

// fioJSON is the part of fio's --output-format=json we read.
type fioJSON struct {
	Jobs []struct {
		Error int    `json:"error"`
		Read  fioDir `json:"read"`
		Write fioDir `json:"write"`
	} `json:"jobs"`
}

type fioDir struct {
	IOPS     float64 `json:"iops"`
	BwBytes  float64 `json:"bw_bytes"`
	TotalIOs int64   `json:"total_ios"`
	ClatNs   struct {
		Percentile map[string]float64 `json:"percentile"`
	} `json:"clat_ns"`
}

// sampleData is one sample file written by the guest's sample function.
type sampleData struct {
	busy, total float64 // jiffies summed over CPUs
	uptime      float64 // seconds
	lbTicks     float64 // lunbridge utime+stime, clock ticks
	baseTicks   float64 // the same for the baseline lunbridge
	baseRSSKiB  int64
	rssKiB      int64
	hwmKiB      int64
}

// userHZ is USER_HZ, the unit of /proc/stat and /proc/PID/stat times.
const userHZ = 100

func readSample(path string) (sampleData, error) {
	var s sampleData
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "cpu":
			// user nice system idle iowait irq softirq steal ...
			for i, v := range f[1:] {
				n, _ := strconv.ParseFloat(v, 64)
				if i >= 8 { // guest time is already in user
					break
				}
				s.total += n
				if i != 3 && i != 4 {
					s.busy += n
				}
			}
		case "uptime":
			s.uptime, _ = strconv.ParseFloat(f[1], 64)
		case "lbstat", "basestat":
			// f[1:] is /proc/PID/stat; utime and stime are its fields 14
			// and 15 (proc(5)), comm "(lunbridge)" has no spaces.
			if len(f) > 16 {
				u, _ := strconv.ParseFloat(f[14], 64)
				st, _ := strconv.ParseFloat(f[15], 64)
				if f[0] == "lbstat" {
					s.lbTicks = u + st
				} else {
					s.baseTicks = u + st
				}
			}
		case "baseVmRSS:":
			s.baseRSSKiB, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmRSS:":
			s.rssKiB, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			s.hwmKiB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if s.total == 0 {
		return s, fmt.Errorf("%s: no cpu line", path)
	}
	return s, nil
}

func readBench(dir string, c benchConfig) (*benchReport, error) {
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		return nil, fmt.Errorf("bench results: %w", err)
	}
	rep := &benchReport{
		Date: time.Now().UTC().Format(time.RFC3339),
		Env:  strings.TrimSpace(string(env)),
		Config: map[string]any{
			"runtime_s": c.runtime, "ramp_s": c.ramp, "size_mb": c.sizeMB,
			"lunbridge_flags": c.lbFlags,
		},
	}
	if c.baseline != "" {
		rep.Config["baseline_flags"] = c.baseFlags
	}
	idle, err := readSample(filepath.Join(dir, "idle"))
	if err != nil {
		return nil, err
	}
	end, err := readSample(filepath.Join(dir, "end"))
	if err != nil {
		return nil, err
	}
	rep.IdleRSSKiB, rep.PeakRSSKiB = idle.rssKiB, end.hwmKiB
	for _, j := range c.jobs {
		for _, tg := range c.targets {
			r, err := readOne(dir, tg.name, j.name)
			if err != nil {
				return nil, err
			}
			rep.Results = append(rep.Results, r)
		}
	}
	return rep, nil
}

func readOne(dir, target, job string) (benchResult, error) {
	r := benchResult{Job: job, Target: target}
	base := filepath.Join(dir, target+"."+job)
	b, err := os.ReadFile(base + ".json")
	if err != nil {
		return r, fmt.Errorf("bench results: %w", err)
	}
	// fio may print notes before the JSON document.
	if i := bytes.IndexByte(b, '{'); i > 0 {
		b = b[i:]
	}
	var fj fioJSON
	if err := json.Unmarshal(b, &fj); err != nil {
		return r, fmt.Errorf("bench results: %s.json: %w", base, err)
	}
	if len(fj.Jobs) != 1 {
		return r, fmt.Errorf("bench results: %s.json: %d jobs, want 1", base, len(fj.Jobs))
	}
	j := fj.Jobs[0]
	if j.Error != 0 {
		return r, fmt.Errorf("bench results: %s: fio error %d", base, j.Error)
	}
	d := j.Read
	if j.Write.TotalIOs > d.TotalIOs {
		d = j.Write
	}
	r.IOPS, r.MiBps, r.IOs = d.IOPS, d.BwBytes/(1<<20), d.TotalIOs
	r.P50us = d.ClatNs.Percentile["50.000000"] / 1000
	r.P99us = d.ClatNs.Percentile["99.000000"] / 1000
	pre, err1 := readSample(base + ".pre")
	post, err2 := readSample(base + ".post")
	if err1 == nil && err2 == nil && post.uptime > pre.uptime && r.IOPS > 0 {
		// I/Os in the sampling window, at the rate fio measured.
		ios := r.IOPS * (post.uptime - pre.uptime)
		r.Sampled = true
		r.CPUusPerIO = (post.busy - pre.busy) / userHZ * 1e6 / ios
		switch target {
		case "lunbridge":
			r.LBusPerIO = (post.lbTicks - pre.lbTicks) / userHZ * 1e6 / ios
			r.LBRSSKiB = post.rssKiB
		case "baseline":
			r.LBusPerIO = (post.baseTicks - pre.baseTicks) / userHZ * 1e6 / ios
			r.LBRSSKiB = post.baseRSSKiB
		}
	}
	return r, nil
}

// find returns the result of job on target, or nil.
func (rep *benchReport) find(job, target string) *benchResult {
	for i := range rep.Results {
		if rep.Results[i].Job == job && rep.Results[i].Target == target {
			return &rep.Results[i]
		}
	}
	return nil
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// markdown renders the report as the tables BENCHMARKS.md uses.
func (rep *benchReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lunbridge fio benchmark, %s\n\n", rep.Date)
	fmt.Fprintf(&b, "config: %v\n\n", rep.Config)
	b.WriteString("| job | target | IOPS | MiB/s | p50 µs | p99 µs | guest CPU µs/IO | daemon CPU µs/IO | daemon RSS MiB |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		cpu, lbCPU, rss := math.NaN(), math.NaN(), math.NaN()
		if r.Sampled {
			cpu = r.CPUusPerIO
			if r.Target == "lunbridge" || r.Target == "baseline" {
				lbCPU, rss = r.LBusPerIO, float64(r.LBRSSKiB)/1024
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Job, r.Target,
			fmtNum(r.IOPS, 0), fmtNum(r.MiBps, 1), fmtNum(r.P50us, 0), fmtNum(r.P99us, 0),
			fmtNum(cpu, 0), fmtNum(lbCPU, 0), fmtNum(rss, 1))
	}
	b.WriteString("\n| job | lunbridge/fileio IOPS | lunbridge/fileio-wb IOPS | lunbridge/raw IOPS | p99 lunbridge/fileio | lunbridge/baseline IOPS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	seen := map[string]bool{}
	for _, r := range rep.Results {
		if seen[r.Job] {
			continue
		}
		seen[r.Job] = true
		lb := rep.find(r.Job, "lunbridge")
		ratio := func(target string, lat bool) string {
			o := rep.find(r.Job, target)
			if lb == nil || o == nil {
				return "-"
			}
			if lat {
				if o.P99us == 0 {
					return "-"
				}
				return fmtNum(lb.P99us/o.P99us, 2)
			}
			if o.IOPS == 0 {
				return "-"
			}
			return fmtNum(lb.IOPS/o.IOPS, 2)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Job,
			ratio("fileio", false), ratio("fileio-wb", false), ratio("raw", false), ratio("fileio", true), ratio("baseline", false))
	}
	fmt.Fprintf(&b, "\nlunbridge RSS: idle %.1f MiB, peak (VmHWM) %.1f MiB\n",
		float64(rep.IdleRSSKiB)/1024, float64(rep.PeakRSSKiB)/1024)
	fmt.Fprintf(&b, "\nguest:\n\n```\n%s\n```\n", rep.Env)
	return b.String()
}

// save writes the report (markdown and JSON) and fio's raw output to
// out/<timestamp>/ and the markdown to out/latest.md.
func (rep *benchReport) save(out, rawDir string) error {
	stamp := time.Now().UTC().Format("20060102-150405")
	dir := filepath.Join(out, stamp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench out: %w", err)
	}
	md := rep.markdown()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench out: %w", err)
	}
	files := map[string][]byte{
		filepath.Join(dir, "report.md"):   []byte(md),
		filepath.Join(dir, "report.json"): js,
		filepath.Join(out, "latest.md"):   []byte(md),
	}
	entries, err := os.ReadDir(rawDir)
	if err != nil {
		return fmt.Errorf("bench out: %w", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(rawDir, e.Name()))
		if err != nil {
			return fmt.Errorf("bench out: %w", err)
		}
		files[filepath.Join(dir, "raw", e.Name())] = b
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("bench out: %w", err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("bench out: %w", err)
		}
	}
	return nil
}
