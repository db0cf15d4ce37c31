// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestBenchFio compares lunbridge with LIO's in-kernel fileio backstore and
// with the backing file itself, on the setups users have, one boot of the
// harness VM per setup (a subtest each; the guest side is
// testdata/bench.sh, which says what each setup runs): tmpfs, ext4 on a
// virtio disk (lunbridge with and without --direct-io), a replica-3
// GlusterFS volume through its FUSE client, 8 LUNs at once against 8
// fileio LUNs, and the idle RSS and threads of one daemon serving 64 LUNs.
// In a setup every fio job runs against each target in turn before the
// next job, so host noise hits the targets alike. It writes tables (IOPS,
// MiB/s, p50/p99 total latency, guest CPU per I/O, the daemon's own
// CPU per I/O and RSS, ratios, and issue 14's targets) to bench-out/ and
// the test log. It runs only with LUNBRIDGE_BENCH set (scripts/bench.sh)
// and asserts only that fio ran without errors and measured something: the
// numbers are reported, never judged.
//
// Knobs (environment):
//
//	LUNBRIDGE_BENCH_SETUPS   comma-separated setups (default all:
//	                         tmpfs,ext4,gluster,scale,idle)
//	LUNBRIDGE_BENCH_RUNTIME  seconds per job and target (default 10, at least 4)
//	LUNBRIDGE_BENCH_RAMP     fio ramp_time seconds (default 2)
//	LUNBRIDGE_BENCH_SIZE_MB  size of each target (default 256; Gluster
//	                         uses at most 64, scale a quarter per LUN)
//	LUNBRIDGE_BENCH_JOBS     comma-separated job names to run (default all)
//	LUNBRIDGE_BENCH_TARGETS  comma-separated targets to run (default all)
//	LUNBRIDGE_BENCH_FLAGS    extra "lunbridge export" flags, e.g. "--workers 8"
//	LUNBRIDGE_BENCH_ENV      environment of lunbridge, NAME=VALUE words,
//	                         e.g. "GOMAXPROCS=1"
//	LUNBRIDGE_BENCH_BASELINE path of another lunbridge binary (e.g. built
//	                         from the previous commit): adds the target
//	                         "baseline", served by it with the same flags,
//	                         so that an optimisation is measured side by
//	                         side with what it replaces (tmpfs, ext4 and
//	                         gluster setups)
//	LUNBRIDGE_BENCH_BASELINE_FLAGS, LUNBRIDGE_BENCH_BASELINE_ENV  the
//	                         baseline's extra export flags and environment
//	                         (default: lunbridge's); with the same binary
//	                         as baseline, compares flags or environments
//	LUNBRIDGE_BENCH_PEER     a tcmu-runner build directory (benchPeerFiles):
//	                         adds the target "tcmu-runner", the peer TCMU
//	                         handler's file handler on a file like the
//	                         others, run right after lunbridge and baseline
//	                         in the tmpfs and ext4 setups, with the ratios
//	                         lunbridge/tcmu-runner. Never built in CI:
//	                         scripts/build-peer.sh builds it outside the
//	                         repository from a tcmu-runner source tree
//	                         (v1.6.2, commit 7b9e500)
//	LUNBRIDGE_BENCH_PERF     if set, profile the whole guest (kernel and
//	                         lunbridge) with the host's perf during the
//	                         sampling window of the lunbridge,
//	                         lunbridge-dio, tcmu-runner and fileio
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
//	LUNBRIDGE_BENCH_SCHED    stat, 1, all, qfull or perf: the scheduler's
//	                         evidence (testdata/bench.sh): per-thread
//	                         schedstat of the daemons and fio around every
//	                         run (stat: only that, no tracer); for the
//	                         lunbridge runs (and with "all" or "qfull" the
//	                         tcmu-runner runs) perf sched record
//	                         (timehist, latency, per-thread summary) and a
//	                         0.5 s timeline of tracepoints armed before
//	                         fio starts: the scheduler's, LIO's command
//	                         start and completion, the block layer's and
//	                         the handlers' system calls
//	                         (scripts/bench-sched.sh ftrace and commands);
//	                         "qfull" also counts the commands the kernel
//	                         parked in its qfull list (a kretprobe);
//	                         "perf": perf sched alone, for lunbridge,
//	                         baseline and tcmu-runner (the per-command
//	                         timeline, scripts/bench-sched.sh cycles).
//	                         Needs LUNBRIDGE_BENCH_RUNTIME of at least 8;
//	                         skews the numbers of those runs.
//	LUNBRIDGE_BENCH_GOTRACE  if set, the main lunbridge runs with
//	                         LUNBRIDGE_TRACE: its Go execution trace over
//	                         the whole boot lands in the raw directory as
//	                         lunbridge.gotrace (go tool trace)
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
	if cfg.peer != "" {
		for _, f := range benchPeerFiles {
			files["peer/"+f] = filepath.Join(cfg.peer, f)
		}
	}
	out := os.Getenv("LUNBRIDGE_BENCH_OUT")
	if out == "" {
		root, err := vmtest.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		out = filepath.Join(root, "bench-out")
	}
	var reps []*benchReport
	raw := map[string]map[string][]byte{}
	for _, setup := range cfg.setups {
		t.Run(setup, func(t *testing.T) {
			rep, files := benchSetup(t, cfg, setup, files)
			reps = append(reps, rep)
			raw[setup] = files
		})
	}
	if len(reps) == 0 {
		t.Fatal("no setup ran")
	}
	md := benchMarkdown(reps)
	t.Logf("\n%s", md)
	if err := saveBench(out, md, reps, raw); err != nil {
		t.Fatal(err)
	}
}

// benchSetup runs one setup in one boot and returns its report and the
// guest's raw results by file name (the share goes with the subtest).
func benchSetup(t *testing.T, cfg benchConfig, setup string, files map[string]string) (*benchReport, map[string][]byte) {
	t.Helper()
	opts := vmtest.Options{
		Files:      files,
		MemoryMB:   2048 + 4*cfg.sizeMB,
		NoTrace:    true,
		KernelArgs: cfg.kernelArgs,
	}
	mb := cfg.sizeMB
	jobs := cfg.jobs
	lib := ""
	switch setup {
	case "ext4":
		opts.DiskMB = 6*mb + 512
		if cfg.peer != "" {
			opts.DiskMB += mb // tcmu-runner's file
		}
	case "gluster":
		lib = glusterLib(t)
		// Three copies of each file on one RAM disk of the guest.
		mb = min(mb, 64)
		opts.MemoryMB = glusterMemoryMB + 1024 + 2*mb
	case "tmpfs":
		if cfg.peer != "" {
			opts.MemoryMB += mb // tcmu-runner's file
		}
	case "scale":
		jobs = nil
		for _, j := range cfg.jobs {
			if strings.Contains(j.name, "qd32") {
				jobs = append(jobs, j)
			}
		}
		if len(jobs) == 0 {
			t.Skip("no QD32 job selected for the scale setup")
		}
	case "idle":
		jobs = nil
		opts.MemoryMB = 2048
	}
	var jobLines []string
	for _, j := range jobs {
		jobLines = append(jobLines, j.name+" "+j.args)
	}
	targets := slices.Clone(cfg.targets)
	if cfg.baseline != "" {
		targets = append(targets, "baseline")
	}
	baseline := ""
	if cfg.baseline != "" {
		baseline = "1"
	}
	peer := ""
	if cfg.peer != "" {
		targets = append(targets, "tcmu-runner")
		peer = "1"
	}
	perf := ""
	if cfg.perf {
		perf = "1"
	}
	ftrace := ""
	if cfg.ftrace {
		ftrace = strings.Join(benchFtraceFuncs, " ")
	}
	opts.Script = guestScript("bench",
		"SETUP", setup,
		"RT", strconv.Itoa(cfg.runtime), "RAMP", strconv.Itoa(cfg.ramp), "MB", strconv.Itoa(mb),
		"JOBS", strings.Join(jobLines, "\n"),
		"TARGETS", strings.Join(targets, " "),
		"LB_FLAGS", cfg.lbFlags, "LB_ENV", cfg.lbEnv,
		"BASELINE", baseline, "BASE_FLAGS", cfg.baseFlags, "BASE_ENV", cfg.baseEnv,
		"PEER", peer,
		"PERF", perf, "FTRACE_FUNCS", ftrace,
		"SCHED", cfg.sched, "GOTRACE", benchFlag(cfg.gotrace),
		"GV_RD_MB", "1024",
	)
	if lib != "" {
		// gluster_up comes from the Gluster library, before the scenario.
		opts.Script = lunbridgeLib + lib + strings.TrimPrefix(opts.Script, lunbridgeLib)
	}
	runs := len(jobs) * (len(benchTargetNames) + 2) // and baseline, tcmu-runner
	if setup == "scale" {
		runs = len(jobs) * 4
	}
	perRun := time.Duration(cfg.runtime+cfg.ramp+15) * time.Second
	opts.Timeout = 8*time.Minute + time.Duration(runs)*perRun
	if cfg.sched != "" {
		// perf sched timehist over 2 s of events, per run, in the guest.
		opts.Timeout += time.Duration(runs) * 2 * time.Minute
	}
	if cfg.ftrace {
		// Formatting and summing a 2 s trace takes minutes in the
		// emulated guest.
		opts.Timeout += time.Duration(runs) * 5 * time.Minute
	}
	probe := startHostProbe()
	time.Sleep(2 * time.Second) // the cores' speed before qemu runs
	booted := float64(time.Now().UnixNano()) / 1e9
	res := vmtest.Run(t, opts)
	speed := probe.stop()
	dir := filepath.Join(res.ShareDir, "bench")
	rep, err := readBench(dir, cfg, setup, mb)
	if err != nil {
		t.Fatal(err)
	}
	if base, n := probeMedian(speed, 0, booted); n > 0 {
		for i := range rep.Results {
			r := &rep.Results[i]
			// A second off each end: the guest's clock is the host's
			// to within its RTC's second.
			if m, k := probeMedian(speed, r.wall[0]+1, r.wall[1]-1); r.wall[0] > 0 && k > 0 {
				r.HostSpeed = base / m
			}
		}
	}
	for _, r := range rep.Results {
		if r.IOPS <= 0 || r.IOs <= 0 {
			t.Errorf("%s on %s: fio measured %.0f IOPS over %d I/Os, want some", r.Job, r.Target, r.IOPS, r.IOs)
		}
	}
	if setup != "idle" && len(rep.Results) == 0 {
		t.Error("no fio run was recorded")
	}
	if setup == "idle" && (rep.Idle == nil || rep.Idle.LUNs != 64) {
		t.Errorf("idle setup: %+v, want 64 LUNs measured", rep.Idle)
	}
	t.Logf("\n%s", rep.markdown())
	raw := map[string][]byte{}
	var tsv bytes.Buffer
	tsv.WriteString("# unix_s\tns_per_iteration (host speed probe; the boot started at " + strconv.FormatFloat(booted, 'f', 3, 64) + ")\n")
	for _, x := range speed {
		fmt.Fprintf(&tsv, "%.3f\t%.4f\n", x.at, x.ns)
	}
	raw["hostprobe.tsv"] = tsv.Bytes()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		raw[e.Name()] = b
	}
	return rep, raw
}

// benchFlag is a guest script's boolean: "1" or empty.
func benchFlag(b bool) string {
	if b {
		return "1"
	}
	return ""
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

// benchSetups are the setups of testdata/bench.sh, in run order.
var benchSetups = []string{"tmpfs", "ext4", "gluster", "scale", "idle"}

// benchTargetNames are the targets testdata/bench.sh knows (each setup
// runs those it has); "baseline" comes with LUNBRIDGE_BENCH_BASELINE.
var benchTargetNames = []string{
	"lunbridge", "lunbridge-dio", "lunbridge-x8", "fileio", "fileio-wb", "fileio-x8", "raw", "raw-dio",
}

// benchPeerFiles are what LUNBRIDGE_BENCH_PEER's directory must hold, as a
// tcmu-runner build directory does: the daemon, its file handler and the
// library it links.
var benchPeerFiles = []string{"tcmu-runner", "handler_file.so", "libtcmu.so.2"}

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

type benchConfig struct {
	runtime, ramp, sizeMB int
	setups                []string
	jobs                  []benchJob
	targets               []string
	lbFlags, lbEnv        string
	perf                  bool
	ftrace                bool
	sched                 string // LUNBRIDGE_BENCH_SCHED: "", "stat", "1", "all", "qfull" or "perf"
	gotrace               bool   // LUNBRIDGE_BENCH_GOTRACE
	kernelArgs            string
	baseline              string // host path of the baseline binary, or ""
	peer                  string // host directory of tcmu-runner, or ""
	baseFlags, baseEnv    string
}

// benchList parses a comma-separated selection from the environment
// variable key, each name one of known; unset means all of known.
func benchList(t *testing.T, key string, known []string) []string {
	t.Helper()
	sel := os.Getenv(key)
	if sel == "" {
		return known
	}
	var out []string
	for _, name := range strings.Split(sel, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(known, name) {
			t.Fatalf("%s: unknown name %q, want one of %s", key, name, strings.Join(known, ", "))
		}
		out = append(out, name)
	}
	return out
}

// staticBinary reports an error unless path is an ELF executable that
// needs no program interpreter: the guest runs binaries from the host's
// share without the host's dynamic loader and libraries, and a dynamic
// one fails there with "No such file or directory".
func staticBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked, which the guest cannot run: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
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
		lbEnv:    os.Getenv("LUNBRIDGE_BENCH_ENV"),
		setups:   benchList(t, "LUNBRIDGE_BENCH_SETUPS", benchSetups),
		targets:  benchList(t, "LUNBRIDGE_BENCH_TARGETS", benchTargetNames),
		perf:     os.Getenv("LUNBRIDGE_BENCH_PERF") != "",
		ftrace:   os.Getenv("LUNBRIDGE_BENCH_FTRACE") != "",
		sched:    os.Getenv("LUNBRIDGE_BENCH_SCHED"),
		gotrace:  os.Getenv("LUNBRIDGE_BENCH_GOTRACE") != "",
		baseline: os.Getenv("LUNBRIDGE_BENCH_BASELINE"),
		peer:     os.Getenv("LUNBRIDGE_BENCH_PEER"),
	}
	var names []string
	for _, j := range benchJobs {
		names = append(names, j.name)
	}
	for _, name := range benchList(t, "LUNBRIDGE_BENCH_JOBS", names) {
		c.jobs = append(c.jobs, benchJobs[slices.Index(names, name)])
	}
	c.baseFlags, c.baseEnv = c.lbFlags, c.lbEnv
	if f, ok := os.LookupEnv("LUNBRIDGE_BENCH_BASELINE_FLAGS"); ok {
		c.baseFlags = f
	}
	if f, ok := os.LookupEnv("LUNBRIDGE_BENCH_BASELINE_ENV"); ok {
		c.baseEnv = f
	}
	for _, f := range []string{c.lbFlags, c.baseFlags, c.lbEnv, c.baseEnv} {
		if strings.ContainsAny(f, "'\"`$;&|<>\\") {
			t.Fatalf("lunbridge flags or environment %q: plain words only", f)
		}
	}
	for _, e := range strings.Fields(c.lbEnv + " " + c.baseEnv) {
		if !strings.Contains(e, "=") {
			t.Fatalf("lunbridge environment %q: want NAME=VALUE words", e)
		}
	}
	if c.baseline != "" {
		if _, err := os.Stat(c.baseline); err != nil {
			t.Fatalf("LUNBRIDGE_BENCH_BASELINE: %v", err)
		}
		if err := staticBinary(c.baseline); err != nil {
			t.Fatalf("LUNBRIDGE_BENCH_BASELINE: %v", err)
		}
		if !slices.Contains(c.targets, "lunbridge") {
			t.Fatal("LUNBRIDGE_BENCH_BASELINE needs the lunbridge target")
		}
	}
	if c.peer != "" {
		for _, f := range benchPeerFiles {
			st, err := os.Stat(filepath.Join(c.peer, f))
			if err == nil && !st.Mode().IsRegular() {
				err = fmt.Errorf("%s is not a file", st.Name())
			}
			if err != nil {
				t.Fatalf("LUNBRIDGE_BENCH_PEER: %v (want a tcmu-runner build directory holding %s)",
					err, strings.Join(benchPeerFiles, ", "))
			}
		}
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
	if c.sched != "" && c.sched != "stat" && c.sched != "1" && c.sched != "all" && c.sched != "qfull" && c.sched != "perf" {
		t.Fatalf("LUNBRIDGE_BENCH_SCHED=%q: want stat, 1, all, qfull or perf", c.sched)
	}
	if c.sched != "" && c.runtime < 8 {
		t.Fatal("LUNBRIDGE_BENCH_SCHED needs LUNBRIDGE_BENCH_RUNTIME of at least 8")
	}
	if c.sched != "" && c.sched != "stat" {
		vmtest.RequireTools(t, "perf")
	}
	if c.ftrace && c.runtime < 5 {
		t.Fatal("LUNBRIDGE_BENCH_FTRACE needs LUNBRIDGE_BENCH_RUNTIME of at least 5")
	}
	return c
}

// benchResult is one job on one target.
type benchResult struct {
	Job, Target string
	IOPS        float64
	MiBps       float64
	P50us       float64 // total latency percentiles (submission to completion), µs
	P99us       float64
	IOs         int64   // I/Os fio counted (ramp excluded)
	Sampled     bool    // the CPU and RSS fields below were measured
	CPUusPerIO  float64 // guest busy CPU time per I/O, µs
	LBusPerIO   float64 // the serving daemon's own CPU time per I/O, µs (lunbridge targets)
	LBUserus    float64 // of which in user mode (its own code and Go's runtime)
	LBRSSKiB    int64   // its VmRSS at the end of the window (lunbridge targets)
	// CmdsPerKick is how many commands shared one kick of the ring in
	// the window (the main lunbridge's FUSE view: total_ops over
	// ring_kicks); 0 when not measured.
	CmdsPerKick float64
	// IPIsPerIO is the interrupts the guest's CPUs sent each other per
	// I/O (rescheduling, function calls and TLB shootdowns, from
	// /proc/interrupts), TLBPerIO the shootdowns alone, when
	// measured (IPIsSampled).
	IPIsPerIO, TLBPerIO float64
	IPIsSampled         bool
	// HostSpeed is how fast the host's cores ran during the window,
	// against the 2 s before the boot (hostprobe_test.go): 1 as fast,
	// 0.5 half as fast; 0 when not measured.
	HostSpeed float64
	// wall is the window's start and end, Unix seconds by the guest's
	// clock (0 if the samples have none).
	wall [2]float64
}

// benchIdle is the idle setup's measurement of one daemon serving many LUNs.
type benchIdle struct {
	LUNs                      int
	ReadyRSSKiB, ReadyThreads int64 // 10 s after it said ready
	TouchRSSKiB, TouchThreads int64 // 10 s after one read of every LUN
	// TouchRSSKiB's parts: lunbridge's own memory, the mapped pages of
	// files (the rings' data areas) and of tmpfs (the backing files'
	// pages it read through their mappings).
	TouchAnonKiB, TouchFileKiB, TouchShmemKiB int64
	PeakRSSKiB                                int64 // VmHWM at the end
	// QuietCPU is the daemon's CPU time (utime+stime) over QuietSeconds
	// of quiet after the reads, as a share of one CPU.
	QuietCPU, QuietSeconds float64
}

// benchReport is one setup's run.
type benchReport struct {
	Setup      string
	Date       string
	Env        string
	Config     map[string]any
	IdleRSSKiB int64 // the main lunbridge's VmRSS before the first run
	PeakRSSKiB int64 // its VmHWM at the end
	Results    []benchResult
	Idle       *benchIdle `json:",omitempty"`
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
	ClatNs   fioLat  `json:"clat_ns"`
	LatNs    fioLat  `json:"lat_ns"`
}

type fioLat struct {
	Percentile map[string]float64 `json:"percentile"`
}

// procSample is one daemon in a sample file.
type procSample struct {
	ticks                float64 // utime+stime, clock ticks
	uticks               float64 // utime
	rssKiB, hwmKiB, thrs int64
	// VmRSS's parts (proc(5)): the process's own memory, and the pages
	// of files and of shared memory (tmpfs) it maps.
	anonKiB, fileKiB, shmemKiB int64
}

// sampleData is one sample file written by the guest's sample function.
type sampleData struct {
	busy, total float64 // jiffies summed over CPUs
	uptime      float64 // seconds
	wall        float64 // Unix seconds by the guest's clock, 0 if absent
	procs       map[string]*procSample
	// ring sums the main lunbridge's LUNs' stats files: total_ops,
	// ring_kicks, ring_wakeups, ring_handoffs.
	ring map[string]float64
	// irq is /proc/interrupts' LOC, RES, CAL and TLB rows, summed over
	// the CPUs.
	irq map[string]float64
}

// userHZ is USER_HZ, the unit of /proc/stat and /proc/PID/stat times.
const userHZ = 100

func readSample(path string) (sampleData, error) {
	s := sampleData{procs: map[string]*procSample{}, ring: map[string]float64{}, irq: map[string]float64{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	proc := func(name string) *procSample {
		p := s.procs[name]
		if p == nil {
			p = new(procSample)
			s.procs[name] = p
		}
		return p
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
		case "wall":
			s.wall, _ = strconv.ParseFloat(f[1], 64)
		case "proc":
			// proc NAME, then /proc/PID/stat: utime and stime are its
			// fields 14 and 15 (proc(5)); comm "(lunbridge)" has no
			// spaces.
			if len(f) > 17 {
				u, _ := strconv.ParseFloat(f[15], 64)
				st, _ := strconv.ParseFloat(f[16], 64)
				proc(f[1]).ticks = u + st
				proc(f[1]).uticks = u
			}
		case "irq":
			// irq ROW COUNT
			if len(f) == 3 {
				s.irq[f[1]], _ = strconv.ParseFloat(f[2], 64)
			}
		case "ringstat":
			// ringstat LUN KEY VALUE...
			for i := 2; i+1 < len(f); i += 2 {
				v, _ := strconv.ParseFloat(f[i+1], 64)
				s.ring[f[i]] += v
			}
		case "VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile", "RssShmem":
			if len(f) < 3 {
				continue
			}
			n, _ := strconv.ParseInt(f[2], 10, 64)
			p := proc(f[1])
			switch f[0] {
			case "VmRSS":
				p.rssKiB = n
			case "VmHWM":
				p.hwmKiB = n
			case "RssAnon":
				p.anonKiB = n
			case "RssFile":
				p.fileKiB = n
			case "RssShmem":
				p.shmemKiB = n
			default:
				p.thrs = n
			}
		}
	}
	if s.total == 0 {
		return s, fmt.Errorf("%s: no cpu line", path)
	}
	return s, nil
}

// get returns the sample of daemon name, or a zero one.
func (s sampleData) get(name string) procSample {
	if p := s.procs[name]; p != nil {
		return *p
	}
	return procSample{}
}

func readBench(dir string, c benchConfig, setup string, mb int) (*benchReport, error) {
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		return nil, fmt.Errorf("bench results: %w", err)
	}
	rep := &benchReport{
		Setup: setup,
		Date:  time.Now().UTC().Format(time.RFC3339),
		Env:   strings.TrimSpace(string(env)),
		Config: map[string]any{
			"runtime_s": c.runtime, "ramp_s": c.ramp, "size_mb": mb,
			"lunbridge_flags": c.lbFlags, "lunbridge_env": c.lbEnv,
		},
	}
	if c.baseline != "" {
		rep.Config["baseline_flags"] = c.baseFlags
		rep.Config["baseline_env"] = c.baseEnv
	}
	idle, err := readSample(filepath.Join(dir, "idle"))
	if err != nil {
		return nil, err
	}
	end, err := readSample(filepath.Join(dir, "end"))
	if err != nil {
		return nil, err
	}
	rep.IdleRSSKiB, rep.PeakRSSKiB = idle.get("lunbridge").rssKiB, end.get("lunbridge").hwmKiB
	if setup == "idle" {
		ready, err := readSample(filepath.Join(dir, "idle.ready"))
		if err != nil {
			return nil, err
		}
		touched, err := readSample(filepath.Join(dir, "idle.touched"))
		if err != nil {
			return nil, err
		}
		quiet, err := readSample(filepath.Join(dir, "idle.quiet"))
		if err != nil {
			return nil, err
		}
		r, tc := ready.get("lunbridge"), touched.get("lunbridge")
		rep.Idle = &benchIdle{
			ReadyRSSKiB: r.rssKiB, ReadyThreads: r.thrs,
			TouchRSSKiB: tc.rssKiB, TouchThreads: tc.thrs,
			TouchAnonKiB: tc.anonKiB, TouchFileKiB: tc.fileKiB, TouchShmemKiB: tc.shmemKiB,
			PeakRSSKiB:   end.get("lunbridge").hwmKiB,
			QuietSeconds: quiet.uptime - touched.uptime,
		}
		tck := 100.0
		for _, line := range strings.Split(rep.Env, "\n") {
			if n, ok := strings.CutPrefix(line, "luns "); ok {
				rep.Idle.LUNs, _ = strconv.Atoi(n)
			}
			if n, ok := strings.CutPrefix(line, "clk_tck "); ok {
				tck, _ = strconv.ParseFloat(n, 64)
			}
		}
		if rep.Idle.QuietSeconds > 0 && tck > 0 {
			rep.Idle.QuietCPU = (quiet.get("lunbridge").ticks - tc.ticks) / tck / rep.Idle.QuietSeconds
		}
	}
	runs, err := os.ReadFile(filepath.Join(dir, "runs"))
	if err != nil {
		return nil, fmt.Errorf("bench results: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(runs)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("bench results: runs: bad line %q", line)
		}
		r, err := readOne(dir, f[0], f[1], f[2])
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// readOne reads the fio run of job on target; daemon names the daemon
// serving target in the samples ("-": none).
func readOne(dir, target, job, daemon string) (benchResult, error) {
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
	// Total latency, submission to completion (fio's lat_percentiles).
	// Completion latency alone (clat) misleads for a TCMU target: at
	// queue depth 1 the handler often runs and completes inside fio's
	// io_submit (on the submitting CPU), and how much of the round trip
	// clat sees then depends on which thread the kernel woke where.
	// Reports written before lat_percentiles have clat only.
	pct := d.LatNs.Percentile
	if len(pct) == 0 {
		pct = d.ClatNs.Percentile
	}
	r.P50us = pct["50.000000"] / 1000
	r.P99us = pct["99.000000"] / 1000
	pre, err1 := readSample(base + ".pre")
	post, err2 := readSample(base + ".post")
	if err1 == nil && err2 == nil && post.uptime > pre.uptime && r.IOPS > 0 {
		// I/Os in the sampling window, at the rate fio measured.
		ios := r.IOPS * (post.uptime - pre.uptime)
		r.Sampled = true
		r.wall = [2]float64{pre.wall, post.wall}
		r.CPUusPerIO = (post.busy - pre.busy) / userHZ * 1e6 / ios
		if daemon != "-" {
			r.LBusPerIO = (post.get(daemon).ticks - pre.get(daemon).ticks) / userHZ * 1e6 / ios
			r.LBUserus = (post.get(daemon).uticks - pre.get(daemon).uticks) / userHZ * 1e6 / ios
			r.LBRSSKiB = post.get(daemon).rssKiB
		}
		if _, ok := post.irq["RES"]; ok {
			r.IPIsSampled = true
			ipi := func(s sampleData) float64 { return s.irq["RES"] + s.irq["CAL"] + s.irq["TLB"] }
			r.IPIsPerIO = (ipi(post) - ipi(pre)) / ios
			r.TLBPerIO = (post.irq["TLB"] - pre.irq["TLB"]) / ios
		}
		if k := post.ring["ring_kicks"] - pre.ring["ring_kicks"]; daemon == "lunbridge" && k > 0 {
			r.CmdsPerKick = (post.ring["total_ops"] - pre.ring["total_ops"]) / k
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

// ratio is a's IOPS over b's on job ("-" if either did not run); with lat,
// a's p99 over b's.
func (rep *benchReport) ratio(job, a, b string, lat bool) (float64, bool) {
	x, y := rep.find(job, a), rep.find(job, b)
	if x == nil || y == nil {
		return math.NaN(), false
	}
	if lat {
		return x.P99us / y.P99us, y.P99us > 0
	}
	return x.IOPS / y.IOPS, y.IOPS > 0
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// benchRatios are the ratio columns of a setup's second table: name, then
// numerator and denominator targets (a "p99" name compares p99 latency).
var benchRatios = [][3]string{
	{"lunbridge/fileio", "lunbridge", "fileio"},
	{"lunbridge/fileio-wb", "lunbridge", "fileio-wb"},
	{"lunbridge/raw", "lunbridge", "raw"},
	{"p99 lunbridge/fileio", "lunbridge", "fileio"},
	{"dio/fileio", "lunbridge-dio", "fileio"},
	{"dio/raw-dio", "lunbridge-dio", "raw-dio"},
	{"lunbridge/baseline", "lunbridge", "baseline"},
	{"lunbridge/tcmu-runner", "lunbridge", "tcmu-runner"},
	{"p99 lunbridge/tcmu-runner", "lunbridge", "tcmu-runner"},
	{"lunbridge x8/x1", "lunbridge-x8", "lunbridge"},
	{"fileio x8/x1", "fileio-x8", "fileio"},
}

// markdown renders one setup's report as the tables BENCHMARKS.md uses.
func (rep *benchReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\nconfig: %v\n\n", rep.Setup, rep.Config)
	if len(rep.Results) > 0 {
		b.WriteString("| job | target | IOPS | MiB/s | p50 µs | p99 µs | guest CPU µs/IO | daemon CPU µs/IO | of it user | daemon RSS MiB | cmds/kick | IPIs/IO (TLB) | host speed |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rep.Results {
			cpu, lbCPU, user, rss, cpk := math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
			if r.Sampled {
				cpu = r.CPUusPerIO
				if r.LBRSSKiB > 0 {
					lbCPU, user, rss = r.LBusPerIO, r.LBUserus, float64(r.LBRSSKiB)/1024
				}
			}
			if r.CmdsPerKick > 0 {
				cpk = r.CmdsPerKick
			}
			ipis := "-"
			if r.Sampled && r.IPIsSampled {
				ipis = fmtNum(r.IPIsPerIO, 2) + " (" + fmtNum(r.TLBPerIO, 2) + ")"
			}
			speed := math.NaN()
			if r.HostSpeed > 0 {
				speed = r.HostSpeed
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Job, r.Target,
				fmtNum(r.IOPS, 0), fmtNum(r.MiBps, 1), fmtNum(r.P50us, 0), fmtNum(r.P99us, 0),
				fmtNum(cpu, 1), fmtNum(lbCPU, 1), fmtNum(user, 1), fmtNum(rss, 1), fmtNum(cpk, 1), ipis, fmtNum(speed, 2))
		}
		// Only the ratio columns this setup has.
		var cols [][3]string
		for _, c := range benchRatios {
			for _, r := range rep.Results {
				if _, ok := rep.ratio(r.Job, c[1], c[2], false); ok {
					cols = append(cols, c)
					break
				}
			}
		}
		b.WriteString("\n| job |")
		for _, c := range cols {
			fmt.Fprintf(&b, " %s |", c[0])
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
		seen := map[string]bool{}
		for _, r := range rep.Results {
			if seen[r.Job] {
				continue
			}
			seen[r.Job] = true
			fmt.Fprintf(&b, "| %s |", r.Job)
			for _, c := range cols {
				v, _ := rep.ratio(r.Job, c[1], c[2], strings.HasPrefix(c[0], "p99"))
				fmt.Fprintf(&b, " %s |", fmtNum(v, 2))
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\nlunbridge RSS: before the runs %.1f MiB, peak (VmHWM) %.1f MiB\n",
			float64(rep.IdleRSSKiB)/1024, float64(rep.PeakRSSKiB)/1024)
	}
	if i := rep.Idle; i != nil {
		fmt.Fprintf(&b, "one daemon serving %d LUNs: RSS %.1f MiB and %d threads once ready; "+
			"%.1f MiB and %d threads after one read of every LUN; peak (VmHWM) %.1f MiB; "+
			"CPU over the %.0f s after that %.3f%% of one CPU\n",
			i.LUNs, float64(i.ReadyRSSKiB)/1024, i.ReadyThreads,
			float64(i.TouchRSSKiB)/1024, i.TouchThreads, float64(i.PeakRSSKiB)/1024,
			i.QuietSeconds, 100*i.QuietCPU)
		fmt.Fprintf(&b, "after the reads, RSS = anonymous %.1f + file %.1f + shmem %.1f MiB "+
			"(file: mapped files and devices, the rings' data areas among them; shmem: tmpfs pages mapped, the backing files' read through their mappings among them)\n",
			float64(i.TouchAnonKiB)/1024, float64(i.TouchFileKiB)/1024, float64(i.TouchShmemKiB)/1024)
	}
	fmt.Fprintf(&b, "\nguest:\n\n```\n%s\n```\n", rep.Env)
	return b.String()
}

// benchTarget is one of issue 14's targets: a measured value against its
// goal.
type benchTarget struct {
	what, setup string
	value, goal float64
	below       bool // met when value < goal (else value >= goal)
	ok          bool // both sides were measured
}

// benchTargets computes issue 14's targets from the setups' reports.
func benchTargets(reps []*benchReport) []benchTarget {
	by := map[string]*benchReport{}
	for _, r := range reps {
		by[r.Setup] = r
	}
	var out []benchTarget
	add := func(what, setup, job, a, b string, goal float64) {
		tg := benchTarget{what: what, setup: setup, goal: goal, value: math.NaN()}
		if rep := by[setup]; rep != nil {
			tg.value, tg.ok = rep.ratio(job, a, b, false)
		}
		out = append(out, tg)
	}
	add("4k QD1 read, lunbridge/fileio", "tmpfs", "rand-read-4k-qd1", "lunbridge", "fileio", 0.3)
	add("4k QD32 read, lunbridge/fileio", "tmpfs", "rand-read-4k-qd32", "lunbridge", "fileio", 0.6)
	add("4k QD32 write, lunbridge/fileio", "tmpfs", "rand-write-4k-qd32", "lunbridge", "fileio", 0.6)
	add("sequential 1 MiB read, lunbridge/raw", "tmpfs", "seq-read-1M-qd8", "lunbridge", "raw", 0.9)
	add("sequential 1 MiB write, lunbridge/raw", "tmpfs", "seq-write-1M-qd8", "lunbridge", "raw", 0.9)
	add("ext4 --direct-io sequential read, dio/fileio", "ext4", "seq-read-1M-qd8", "lunbridge-dio", "fileio", 0.8)
	add("ext4 --direct-io sequential write, dio/fileio", "ext4", "seq-write-1M-qd8", "lunbridge-dio", "fileio", 0.8)
	for _, job := range []string{"rand-read-4k-qd32", "rand-write-4k-qd32"} {
		tg := benchTarget{what: "8 LUNs scale (x8/x1), lunbridge over fileio, " + job, setup: "scale", goal: 1, value: math.NaN()}
		if rep := by["scale"]; rep != nil {
			l, ok1 := rep.ratio(job, "lunbridge-x8", "lunbridge", false)
			f, ok2 := rep.ratio(job, "fileio-x8", "fileio", false)
			tg.value, tg.ok = l/f, ok1 && ok2 && f > 0
		}
		out = append(out, tg)
	}
	tg := benchTarget{what: "64 idle LUNs, RSS MiB", setup: "idle", goal: 128, below: true, value: math.NaN()}
	if rep := by["idle"]; rep != nil && rep.Idle != nil {
		tg.value, tg.ok = float64(max(rep.Idle.ReadyRSSKiB, rep.Idle.TouchRSSKiB))/1024, true
	}
	out = append(out, tg)
	tg = benchTarget{what: "64 idle LUNs, CPU % of one CPU over 60 s", setup: "idle", goal: 1, below: true, value: math.NaN()}
	if rep := by["idle"]; rep != nil && rep.Idle != nil && rep.Idle.QuietSeconds > 0 {
		tg.value, tg.ok = 100*rep.Idle.QuietCPU, true
	}
	return append(out, tg)
}

// benchMarkdown renders the targets and every setup's tables.
func benchMarkdown(reps []*benchReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lunbridge fio benchmark, %s\n\n", time.Now().UTC().Format(time.RFC3339))
	b.WriteString("| target (issue 14) | setup | measured | goal | met |\n|---|---|---:|---:|---|\n")
	for _, tg := range benchTargets(reps) {
		met, op := "not run", "≥"
		if tg.below {
			op = "<"
		}
		if tg.ok {
			met = "no"
			if (tg.below && tg.value < tg.goal) || (!tg.below && tg.value >= tg.goal) {
				met = "yes"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s %s | %s |\n", tg.what, tg.setup, fmtNum(tg.value, 2), op, fmtNum(tg.goal, 1), met)
	}
	for _, r := range reps {
		b.WriteString("\n" + r.markdown())
	}
	return b.String()
}

// benchChartTSV is what scripts/bench-chart.sh plots: one line per run,
// setup, job, target, MiB/s and IOPS, tab-separated.
func benchChartTSV(reps []*benchReport) []byte {
	var b bytes.Buffer
	b.WriteString("# setup\tjob\ttarget\tMiBps\tIOPS\n")
	for _, r := range reps {
		for _, x := range r.Results {
			fmt.Fprintf(&b, "%s\t%s\t%s\t%.1f\t%.0f\n", r.Setup, x.Job, x.Target, x.MiBps, x.IOPS)
		}
	}
	return b.Bytes()
}

// saveBench writes the reports (markdown, JSON and the chart's data) and
// each setup's raw guest output to out/<timestamp>/ and the markdown to
// out/latest.md.
func saveBench(out, md string, reps []*benchReport, raw map[string]map[string][]byte) error {
	dir := filepath.Join(out, time.Now().UTC().Format("20060102-150405"))
	js, err := json.MarshalIndent(reps, "", "  ")
	if err != nil {
		return fmt.Errorf("bench out: %w", err)
	}
	files := map[string][]byte{
		filepath.Join(dir, "report.md"):   []byte(md),
		filepath.Join(dir, "report.json"): js,
		filepath.Join(dir, "chart.tsv"):   benchChartTSV(reps),
		filepath.Join(out, "latest.md"):   []byte(md),
	}
	for setup, fs := range raw {
		for name, b := range fs {
			files[filepath.Join(dir, setup, name)] = b
		}
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

// TestStaticBinary: a dynamically linked program (the system's shell) and
// a file that is no ELF are refused as the benchmark's baseline; the
// check runs without the VM.
func TestStaticBinary(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	f, err := elf.Open(sh)
	if err != nil {
		t.Skip(err)
	}
	dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !dynamic {
		t.Skipf("%s is not dynamically linked here", sh)
	}
	if err := staticBinary(sh); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("staticBinary(%s) = %v, want the dynamic-linking error", sh, err)
	}
	script := filepath.Join(t.TempDir(), "lunbridge")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := staticBinary(script); err == nil {
		t.Errorf("staticBinary(a shell script) = nil, want an error")
	}
}
