# SPDX-License-Identifier: Apache-2.0
# The guest half of the benchmark. scripts/bench.sh is the host's entry
# point of the same name: it runs TestBenchFio, which boots a VM per setup
# and runs this file there (embedded with the other testdata/*.sh).
#
# The guest side of TestBenchFio (integration/bench_test.go): one setup of
# the fio benchmark in one boot, every fio job run against each target of
# the setup in turn before the next job, so host noise hits them alike.
#
# Set by the Go test (guestScript):
#   SETUP    tmpfs | ext4 | gluster | scale | idle
#   RT RAMP  fio runtime and ramp_time, seconds
#   MB       size of each target, MiB
#   JOBS     one fio job a line: NAME ARGS...
#   TARGETS  the targets to run, space-separated (empty: all of the setup)
#   LB_FLAGS extra "lunbridge export" flags; LB_ENV environment for it
#            (NAME=VALUE words, e.g. GOMAXPROCS=1)
#   BASELINE 1: also run target "baseline", /mnt/host/lunbridge-base with
#            BASE_FLAGS and BASE_ENV, right after "lunbridge"
#   PEER     1: also run target "tcmu-runner" (tmpfs and ext4): tcmu-runner's
#            file handler from /mnt/host/peer (tcmu-runner, handler_file.so,
#            libtcmu.so.2), right after "baseline"
#   PERF     1: perf profiles of the guest during the lunbridge,
#            lunbridge-dio, tcmu-runner and fileio runs
#   FTRACE_FUNCS  kernel functions to time with ftrace during those runs
#   SCHED    stat, 1, all, qfull or perf: per-thread schedstat of the daemons and fio in
#            every sample (threads; stat: only that); and the scheduler's evidence
#            (sched_arm, sched_evidence): perf sched and a timeline of
#            tracepoints (the scheduler's, LIO's command start and
#            completion, the block layer's, the handlers' system calls),
#            for the lunbridge runs (1) or for the tcmu-runner runs too
#            (all); qfull: all, and every queue_cmd_ring return (1: the
#            command went to the kernel's qfull list); perf: only perf
#            sched, for lunbridge, baseline and tcmu-runner (no timeline).
#            Each run's evidence is copied to the share's bench-partial/
#            right after the run, so a guest that wedges keeps what it had.
#   GOTRACE  1: the main lunbridge runs with LUNBRIDGE_TRACE, its Go
#            execution trace saved as lunbridge.gotrace
#
# Targets by setup (each file filled before the runs, so nothing reads
# holes):
#   tmpfs    lunbridge, [baseline], [tcmu-runner], fileio (O_DSYNC,
#            WCE=0), fileio-wb (page cache, WCE=1), raw (fio on the file,
#            buffered: tmpfs has no O_DIRECT on 6.1; on tmpfs that is the
#            same one memory copy without a cache to bypass)
#   ext4     the same on ext4 on a virtio disk (/dev/vda, DiskMB), plus
#            lunbridge-dio (--direct-io) and raw-dio (fio with O_DIRECT)
#   gluster  on a replica-3 GlusterFS volume through its FUSE client:
#            lunbridge, lunbridge-dio, fileio, raw, raw-dio
#   scale    8 LUNs of MB/4 MiB on tmpfs served by one daemon, and 8
#            fileio LUNs: each job on LUN 0 alone (lunbridge, fileio) and
#            on all 8 at once (lunbridge-x8, fileio-x8: one fio job per
#            LUN, JOBS' iodepth each, reported as one group)
#   idle     no fio: one daemon serving 64 LUNs; its RSS and threads once
#            ready, and after one read of every LUN
#
# Every run is sampled by a background subshell inside its steady state
# (from ramp+1 s to runtime+ramp-1 s after the start): /proc/stat and
# /proc/uptime for the whole guest's busy time, each daemon's
# /proc/PID/stat and status for its own CPU time and RSS. Results go to
# /tmp/res, copied to the share at the end (the 9p share is quiet while
# fio runs); $R/runs lists "TARGET JOB DAEMON" for each run made.

R=/tmp/res
mkdir -p $R
# Run lunbridge from the guest's /tmp, which the hostrun chroot shares, so
# that perf finds its symbols by the same path.
cp /mnt/host/lunbridge /tmp/lunbridge
LB=/tmp/lunbridge
[ "$BASELINE" != 1 ] || cp /mnt/host/lunbridge-base /tmp/lunbridge-base
: > $R/runs
# DAEMONS: NAME=PID words, the daemons sample records.
DAEMONS=
# VIEW is where the main lunbridge mounts its FUSE view; none in the idle
# setup, whose memory figures are the ring's and the LUNs' alone.
VIEW=/tmp/lbview
[ "$SETUP" != idle ] || VIEW=

# want TARGET: whether TARGET is selected.
want() {
	[ -z "$TARGETS" ] && return 0
	case " $TARGETS " in *" $1 "*) return 0 ;; esac
	return 1
}

# fill FILE MIB: write FILE with zeros, so that reads find real blocks.
fill() { dd if=/dev/zero of="$1" bs=1M count="$2" conv=fsync 2>/dev/null; }

# lb_main OUT NAME FLAGS FILE...: start the main lunbridge on FILEs (LUNs
# named NAME, NAME1, ... in order) with LB_ENV, LB_FLAGS and FLAGS,
# tcm_loop fabric.
lb_main() {
	_o=$1 _n=$2 _fl=$3; shift 3
	_names= _i=0
	for _f in "$@"; do
		if [ $_i = 0 ]; then _names="--name $_n"; else _names="$_names --name $_n$_i"; fi
		_i=$((_i + 1))
	done
	_lb=$LB
	LB="env $LB_ENV $_lb"
	[ "$GOTRACE" != 1 ] || LB="env $LB_ENV LUNBRIDGE_TRACE=$R/lunbridge.gotrace $_lb"
	# shellcheck disable=SC2086
	# Its FUSE view gives each LUN's ring counters to sample.
	lb_start $_o --log-level warn export --mount=$VIEW $LB_FLAGS $_fl $_names "$@"
	LB=$_lb
	DAEMONS="$DAEMONS lunbridge=$LB_PID"
}

# lb_other NAME BIN WWN ENV FLAGS FILE: start another lunbridge on FILE with
# no fabric and export its TCMU backstore through tcm_loop target naa.WWN
# (lunbridge's own tcm_loop target has one fixed name per machine). Sets
# OTHER_PID and OTHER_DEV; LB_PID and LB_OUT stay the main daemon's.
lb_other() {
	_pid=$LB_PID _out=$LB_OUT _lb=$LB
	LB="env $4 $2"
	# shellcheck disable=SC2086
	lb_start /tmp/$1 --log-level warn export --mount= --fabric none $5 --name $1 "$6"
	OTHER_PID=$LB_PID
	LB_PID=$_pid LB_OUT=$_out LB=$_lb
	OTHER_DEV=$(loop_export $3 "$(ls -d $CFG/core/user_*/$1)")
	[ -b "$OTHER_DEV" ] || die "no block device for $1"
	DAEMONS="$DAEMONS $1=$OTHER_PID"
	OTHERS="$OTHERS $3:$OTHER_PID"
}
OTHERS=

# peer_start WWN FILE MIB: serve FILE (its path in the hostrun chroot) with
# tcmu-runner's file handler as backstore core/user_9/runner, MIB MiB,
# hw_max_sectors 1024, and export it through tcm_loop target naa.WWN. Sets
# PEER_PID and PEER_DEV. The backstore is enabled first, so tcmu-runner
# finds it in its scan of /dev/uio* at start (no race with its netlink
# events); it is ready when it holds the device's /dev/uioN open.
PEER_HBA=$CFG/core/user_9 PEER_PID= PEER_VERSION=
peer_start() {
	cp -r /mnt/host/peer /tmp/peer
	PEER_VERSION=$(hostrun LD_LIBRARY_PATH=/tmp/peer /tmp/peer/tcmu-runner -V 2>&1 || true)
	# tcmu-runner reads /etc/tcmu/tcmu.conf, and asks kmod for
	# target_core_user, which the host's /lib/modules cannot resolve for
	# the guest's kernel: a modprobe.d alias names the module, which kmod
	# then finds live in /sys/module. Both go in a copy of the few files
	# it needs from the host's /etc, bound over the chroot's read-only
	# /etc in a mount namespace of its own (fio keeps the host's /etc).
	mkdir -p /run/peer-etc/tcmu /run/peer-etc/modprobe.d
	for _f in ld.so.cache passwd group nsswitch.conf localtime; do
		cp -a /hostroot/etc/$_f /run/peer-etc/
	done
	echo "log_level = 3" > /run/peer-etc/tcmu/tcmu.conf
	echo "alias target_core_user target_core_user" > /run/peer-etc/modprobe.d/tcmu-runner.conf
	mkdir -p $PEER_HBA/runner
	echo -n "dev_config=file/$2,dev_size=$(($3 << 20)),hw_max_sectors=1024" > $PEER_HBA/runner/control
	echo 1 > $PEER_HBA/runner/enable
	_u=$(grep -l "^tcm-user/9/runner/" /sys/class/uio/uio*/name | cut -d/ -f5)
	[ -n "$_u" ] || die "no UIO device for core/user_9/runner"
	# hostrun's /sys lacks the configfs mounted on the guest's: bind that
	# too. No D-Bus in the guest: tcmu-runner only fails to own its name.
	unshare -m sh -c 'mount --bind /run/peer-etc /hostroot/etc &&
		mount --bind /sys/kernel/config /hostroot/sys/kernel/config &&
		exec hostrun LD_LIBRARY_PATH=/tmp/peer /tmp/peer/tcmu-runner --handler-path /tmp/peer --tcmu-log-dir /tmp/peer' \
		> /tmp/peer/out 2>&1 &
	PEER_PID=$!
	_n=0
	until ls -l /proc/$PEER_PID/fd 2>/dev/null | grep -q "/dev/$_u\$"; do
		_n=$((_n + 1))
		if [ $_n -gt 300 ] || ! kill -0 $PEER_PID 2>/dev/null; then
			cat /tmp/peer/out /tmp/peer/tcmu-runner.log
			die "tcmu-runner did not open /dev/$_u"
		fi
		sleep 0.1
	done
	PEER_DEV=$(loop_export $1 $PEER_HBA/runner)
	[ -b "$PEER_DEV" ] || die "no block device for tcmu-runner"
	echo "tcmu-runner: $PEER_VERSION on /dev/$_u, $PEER_DEV, hw_max_sectors=$(cat $PEER_HBA/runner/attrib/hw_max_sectors) max_sectors_kb=$(cat /sys/block/${PEER_DEV#/dev/}/queue/max_sectors_kb)"
	DAEMONS="$DAEMONS tcmu-runner=$PEER_PID"
}

# peer_stop WWN: unlink tcmu-runner's LUN (before it goes, so that no
# command is left in its ring), stop it and remove its backstore.
peer_stop() {
	loop_unexport $1
	kill -TERM $PEER_PID
	wait $PEER_PID || { _rc=$?; cat /tmp/peer/tcmu-runner.log; die "tcmu-runner exited with $_rc"; }
	rmdir $PEER_HBA/runner $PEER_HBA
}

# The setup: DIR is where the backing files are as the guest sees it, IDIR
# the same directory inside the hostrun chroot (where fio runs).
case $SETUP in
tmpfs | scale | idle)
	mount -o remount,size=$((MB * 6 + 256))m /tmp
	DIR=/tmp/bf IDIR=/tmp/bf
	;;
ext4)
	hostrun mkfs.ext4 -q -F /dev/vda
	mkdir -p /tmp/ext4
	mount -t ext4 /dev/vda /hostroot/tmp/ext4
	DIR=/hostroot/tmp/ext4 IDIR=/tmp/ext4
	;;
gluster)
	gluster_up
	DIR=$GV IDIR=$GV_INNER
	;;
*) die "unknown setup $SETUP" ;;
esac
mkdir -p $DIR
SZ=$((MB << 20))
# FSZ: fio's --size, the size of each target.
FSZ=${MB}M

# Targets: T_<name>=device or file, set only for the targets that run.
case $SETUP in
tmpfs | ext4 | gluster)
	fill $DIR/lb.img $MB
	lb_main /tmp/lb bench "" $DIR/lb.img
	T_lunbridge=$(lb_dev /tmp/lb bench)
	[ -b "$T_lunbridge" ] || die "no block device in lunbridge's output"
	if [ "$BASELINE" = 1 ]; then
		fill $DIR/base.img $MB
		lb_other base /tmp/lunbridge-base 5001405000000b30 "$BASE_ENV" "$BASE_FLAGS" $DIR/base.img
		T_baseline=$OTHER_DEV
	fi
	if [ $SETUP != tmpfs ] && want lunbridge-dio; then
		fill $DIR/dio.img $MB
		lb_other dio $LB 5001405000000b40 "$LB_ENV" "$LB_FLAGS --direct-io" $DIR/dio.img
		T_lunbridge_dio=$OTHER_DEV
	fi
	if [ "$PEER" = 1 ] && [ $SETUP != gluster ] && want tcmu-runner; then
		fill $DIR/runner.img $MB
		peer_start 5001405000000b50 $IDIR/runner.img $MB
		T_tcmu_runner=$PEER_DEV
	fi
	if want fileio; then
		fill $DIR/fileio.img $MB
		T_fileio=$(loop_export 5001405000000b10 "$(fileio_create bfileio $DIR/fileio.img $SZ)")
	fi
	if [ $SETUP != gluster ] && want fileio-wb; then
		fill $DIR/fileiob.img $MB
		T_fileio_wb=$(loop_export 5001405000000b20 "$(fileio_create bfileiowb $DIR/fileiob.img $SZ fd_buffered_io=1)")
	fi
	if want raw || want raw-dio; then
		fill $DIR/raw.img $MB
		want raw && T_raw=$IDIR/raw.img
		[ $SETUP = tmpfs ] || ! want raw-dio || T_raw_dio=$IDIR/raw.img
	fi
	;;
scale)
	SMB=$((MB / 4))
	[ $SMB -ge 16 ] || SMB=16
	FSZ=${SMB}M
	_files=
	for i in 0 1 2 3 4 5 6 7; do
		fill $DIR/l$i.img $SMB
		fill $DIR/f$i.img $SMB
		_files="$_files $DIR/l$i.img"
	done
	# shellcheck disable=SC2086
	lb_main /tmp/lb s "" $_files
	T_lunbridge=$(lb_dev /tmp/lb s)
	T_lunbridge_x8=$T_lunbridge
	for i in 1 2 3 4 5 6 7; do T_lunbridge_x8="$T_lunbridge_x8 $(lb_dev /tmp/lb s$i)"; done
	T_fileio_x8=
	for i in 0 1 2 3 4 5 6 7; do
		_d=$(loop_export 5001405000000b10 "$(fileio_create sf$i $DIR/f$i.img $((SMB << 20)))" $i)
		T_fileio_x8="$T_fileio_x8 $_d"
	done
	T_fileio_x8=${T_fileio_x8# }
	T_fileio=${T_fileio_x8%% *}
	;;
idle)
	_files=
	for i in $(seq 0 63); do _files="$_files $DIR/i$i.img"; done
	# Sparse 64 MiB files (export --size creates them).
	# shellcheck disable=SC2086
	lb_main /tmp/lb i "--size 64M" $_files
	;;
esac

# What the kernel made of each device.
{
	echo "setup $SETUP"
	echo "kernel $(uname -r)"
	echo "nproc $(nproc)"
	[ -z "$PEER_VERSION" ] || echo "peer $PEER_VERSION"
	echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
	echo "memory_kb $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
	for p in $DAEMONS; do
		echo "daemon ${p%%=*}: $(tr '\000' ' ' < /proc/${p#*=}/cmdline)"
	done
	grep -E " ($DIR|${DIR#/hostroot}) " /proc/mounts | sed 's/^/mount /' || true
	for d in $(for v in $(set | sed -n 's/^\(T_[a-z0-9_]*\)=.*/\1/p'); do eval echo \$$v; done | tr ' ' '\n' | sort -u); do
		[ -b "$d" ] || continue
		q=/sys/block/${d#/dev/}/queue
		echo "$d max_sectors_kb=$(cat $q/max_sectors_kb) max_hw_sectors_kb=$(cat $q/max_hw_sectors_kb) nr_requests=$(cat $q/nr_requests) scheduler=$(tr ' ' , < $q/scheduler) queue_depth=$(cat /sys/block/${d#/dev/}/device/queue_depth)"
	done
	for a in /sys/kernel/config/target/core/user_*/*/attrib /sys/kernel/config/target/core/fileio_0/*/attrib; do
		[ -d "$a" ] || continue
		echo "$a hw_max_sectors=$(cat $a/hw_max_sectors) hw_queue_depth=$(cat $a/hw_queue_depth) emulate_write_cache=$(cat $a/emulate_write_cache)"
	done
	# TCMU's ring and data-area geometry, as the kernel reads it back
	# (the attributes that exist on this kernel).
	for a in /sys/kernel/config/target/core/user_*/*/attrib; do
		[ -d "$a" ] || continue
		_l=
		for _k in max_data_area_mb data_pages_per_blk cmd_ring_size_mb qfull_time_out cmd_time_out; do
			[ -e $a/$_k ] && _l="$_l $_k=$(cat $a/$_k)"
		done
		echo "tcmu-geometry ${a%/attrib}$_l"
	done
} > $R/env
cat $R/env

# sample FILE: the guest's CPU counters and each daemon's CPU time, RSS,
# peak RSS and threads.
sample() {
	{
		head -1 /proc/stat
		echo "uptime $(cut -d' ' -f1 /proc/uptime)"
		echo "wall $(date +%s)" # busybox: whole seconds
		for _p in $DAEMONS; do
			echo "proc ${_p%%=*} $(cat /proc/${_p#*=}/stat)"
			grep -E '^(VmRSS|VmHWM|Threads|RssAnon|RssFile|RssShmem):' /proc/${_p#*=}/status | sed "s/: */ ${_p%%=*} /"
		done
		# The main lunbridge's LUNs: commands and ring kicks (FUSE view).
		for _st in $VIEW/*/stats; do
			[ -r "$_st" ] || continue
			echo "ringstat ${_st%/stats} $(awk '$1 ~ /^(total_ops|ring_kicks|ring_wakeups|ring_handoffs)$/ {printf "%s %s ", $1, $2}' "$_st")"
		done
		# Page migration and compaction (kcompactd moves tmpfs pages,
		# which a mapping then faults on).
		grep -E '^(pgmigrate_success|pgmigrate_fail|compact_migrate_scanned|compact_free_scanned|compact_isolated|compact_stall|compact_daemon_wake|compact_daemon_migrate_scanned|pgfault|pgmajfault|thp_fault_alloc|numa_pte_updates) ' /proc/vmstat | sed 's/^/vmstat /'
		# Interrupts the CPUs sent each other (wake-ups, function calls,
		# TLB shootdowns) and the local timer, summed over the CPUs: a
		# mapping's page-table changes cost every CPU a TLB flush, which
		# the emulator pays dearly.
		awk '$1 ~ /^(LOC|RES|CAL|TLB):$/ { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; printf "irq %s %d\n", substr($1, 1, length($1) - 1), n }' /proc/interrupts
		# Huge pages in the daemons' mappings (anonymous: the Go heap
		# under THP "always"; shared memory: a tmpfs file mapped).
		for _p in $DAEMONS; do
			grep -E '^(AnonHugePages|ShmemPmdMapped):' /proc/${_p#*=}/smaps_rollup 2>/dev/null | sed "s/: */ ${_p%%=*} /;s/^/huge /"
		done
		for _kc in $(grep -l '^kcompactd' /proc/[0-9]*/comm 2>/dev/null); do
			echo "kthread $(cat $_kc) utime+stime $(cut -d' ' -f14,15 ${_kc%comm}stat)"
		done
		[ -z "$SCHED" ] || threads
	} > "$1"
}

# threads: the scheduler's own accounting of every thread of the daemons
# and of fio (SCHED): "thread OWNER TID COMM on_ns runq_ns slices vol
# invol", from /proc/PID/task/TID/schedstat (time on a CPU, time runnable
# but waiting for one, timeslices) and its voluntary and involuntary
# context switches. Differences between two samples, per thread, need no
# tracer (scripts/bench-sched.sh schedstat).
threads() {
	# Names of their own: sample runs inside run(), whose _t and _p
	# this must not overwrite (sh has no local variables).
	for _thp in $DAEMONS fio=$(pidof fio | tr ' ' ,); do
		for _thpid in $(echo ${_thp#*=} | tr , ' '); do
			for _tht in /proc/$_thpid/task/*; do
				[ -r $_tht/schedstat ] || continue
				echo "thread ${_thp%%=*} ${_tht##*/} $(tr ' ' _ < $_tht/comm) $(cat $_tht/schedstat) $(sed -n 's/^\(non\)*voluntary_ctxt_switches:[[:space:]]*//p' $_tht/status | tr '\n' ' ')"
			done 2>/dev/null
		done
	done
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

# tracing_setup: tracefs mounted where the tracers look, and proactive
# compaction off.
tracing_setup() {
	[ -e /sys/kernel/tracing/trace ] || mount -t tracefs nodev /sys/kernel/tracing
	# hostrun's /sys is a plain bind of the guest's: perf finds the
	# tracepoints only with tracefs mounted there too.
	[ -e /hostroot/sys/kernel/tracing/trace ] || mount -t tracefs nodev /hostroot/sys/kernel/tracing
	# A first try (2026-12-05) wedged the guest in kcompactd for minutes
	# during the peer's run; proactive compaction is no part of what is
	# measured, so it is off while tracing.
	[ ! -e /proc/sys/vm/compaction_proactiveness ] || echo 0 > /proc/sys/vm/compaction_proactiveness
}

# perf_sched_record TARGET JOB: 2 s of perf sched record, for
# sched_report.
perf_sched_record() {
	hostrun perf sched record -q -o /tmp/sched.$1.$2 -- sleep 2 > /dev/null 2>&1 ||
		echo "# perf sched record failed" > $R/sched.$1.$2.err
	sleep 1.4
}

# The timeline's events, all static tracepoints: the function tracer
# patched thousands of call sites, and under TCG that panicked one guest
# (irqentry_nmi_enter, 2026-12-06) and stalled another for seconds. LIO's
# own command events (target_sequencer_start: LIO takes a command from the
# fabric, target_cmd_init_cdb; target_cmd_complete: LIO completes it), the
# block layer's for fio's requests on the LUN, the scheduler's, and the
# system calls that make the handlers' data path (sched_syscalls).
sched_events="sched:sched_switch sched:sched_wakeup sched:sched_waking
target:target_sequencer_start target:target_cmd_complete
block:block_rq_issue block:block_rq_complete
raw_syscalls:sys_enter raw_syscalls:sys_exit"

# sched_syscalls: x86-64 numbers of read write poll pread64 pwrite64
# nanosleep futex epoll_wait io_getevents io_submit ppoll epoll_pwait
# preadv pwritev preadv2 pwritev2 io_pgetevents io_uring_enter.
sched_syscalls="0 1 7 17 18 35 202 232 208 209 271 281 295 296 327 328 333 426"

# sched_timeline TARGET: whether TARGET's runs get the timeline (SCHED).
sched_timeline() {
	case "$SCHED,$1" in
	1,lunbridge | all,lunbridge | all,tcmu-runner | qfull,lunbridge | qfull,tcmu-runner) return 0 ;;
	esac
	return 1
}

# sched_arm TARGET JOB: before fio starts, everything the timeline needs is
# set up with tracing off, so that during the run a window only flips
# tracing_on. (Set up mid-run, the 8 MiB buffers and the event filters took
# the guest 17 s and the window missed fio, 2026-12-06.) A kretprobe on
# queue_cmd_ring, in a tracing instance of its own, records for "qfull"
# what each submission returned: 0 queued in the ring, 1 parked in the
# kernel's qfull list for lack of ring or data-area space.
sched_arm() {
	_tr=/sys/kernel/tracing
	tracing_setup
	echo 0 > $_tr/tracing_on
	echo nop > $_tr/current_tracer
	echo 8192 > $_tr/buffer_size_kb
	: > $_tr/set_event
	for _se in $sched_events; do
		echo $_se >> $_tr/set_event 2>/dev/null || echo "# no event $_se" >> $R/sched.$1.$2.armed
	done
	_flt=
	for _sn in $sched_syscalls; do _flt="${_flt:+$_flt || }id == $_sn"; done
	for _sd in sys_enter sys_exit; do
		[ ! -e $_tr/events/raw_syscalls/$_sd/filter ] || echo "$_flt" > $_tr/events/raw_syscalls/$_sd/filter
	done
	: > $_tr/trace
	echo "# armed: $(cat $_tr/set_event | tr '\n' ' ')" >> $R/sched.$1.$2.armed
	[ "$SCHED" = qfull ] || return 0
	_q=$_tr/instances/qfull
	[ -d $_q ] || mkdir $_q
	grep -q lbqcr $_tr/kprobe_events 2>/dev/null ||
		echo 'r:lbqcr queue_cmd_ring ret=$retval:s32' >> $_tr/kprobe_events ||
		echo "# no kretprobe on queue_cmd_ring" >> $R/sched.$1.$2.armed
	echo 0 > $_q/tracing_on
	echo 4096 > $_q/buffer_size_kb
	: > $_q/trace
	[ ! -e $_q/events/kprobes/lbqcr/enable ] || echo 1 > $_q/events/kprobes/lbqcr/enable
}

# sched_evidence TARGET JOB: the scheduler's view of a run (SCHED=1; armed
# by sched_arm). A 0.5 s window of the timeline (dumped after fio by
# sched_report to sched.TARGET.JOB.ftrace.txt; scripts/bench-sched.sh
# ftrace and commands read it), then perf sched records 2 s of scheduler
# events (sched_report: timehist and latency per thread). The qfull probe
# counts over the whole 4 s.
sched_evidence() {
	_tr=/sys/kernel/tracing
	_q=$_tr/instances/qfull
	[ "$SCHED" != qfull ] || echo 1 > $_q/tracing_on
	echo 1 > $_tr/tracing_on
	sleep 0.5
	echo 0 > $_tr/tracing_on
	perf_sched_record $1 $2
	[ "$SCHED" != qfull ] || echo 0 > $_q/tracing_on
}

# sched_dump TARGET JOB: after fio, the timeline window to the results and
# the tracers back off.
sched_dump() {
	_tr=/sys/kernel/tracing
	{
		cat $R/sched.$1.$2.armed 2>/dev/null
		echo "# ftrace window 0.5 s: tracepoints; lost events: $(grep -h overrun $_tr/per_cpu/cpu*/stats | awk '{s += $2} END {print s}')"
		cat $_tr/trace
	} > $R/sched.$1.$2.ftrace.txt
	rm -f $R/sched.$1.$2.armed
	: > $_tr/set_event
	for _sd in sys_enter sys_exit; do
		[ ! -e $_tr/events/raw_syscalls/$_sd/filter ] || echo 0 > $_tr/events/raw_syscalls/$_sd/filter
	done
	: > $_tr/trace
	echo 1408 > $_tr/buffer_size_kb
	[ "$SCHED" = qfull ] || return 0
	_q=$_tr/instances/qfull
	[ ! -e $_q/events/kprobes/lbqcr/enable ] || echo 0 > $_q/events/kprobes/lbqcr/enable
	{
		echo "# queue_cmd_ring returns over 4 s: count value"
		grep -o 'ret=-\?[0-9]*' $_q/trace | sort | uniq -c
		echo "# lost events: $(grep -h overrun $_q/per_cpu/cpu*/stats | awk '{s += $2} END {print s}')"
	} > $R/qfull.$1.$2.txt
	: > $_q/trace
	sed "s/^/qfull $1 $2: /" $R/qfull.$1.$2.txt
}

# sched_perf TARGET JOB: perf sched records 2 s of scheduler events and
# nothing else (SCHED=perf): no ftrace, whose windows wedged the guest.
# What sched_report makes of them is the per-command timeline
# (scripts/bench-sched.sh cycles).
sched_perf() {
	tracing_setup
	perf_sched_record $1 $2
}

# sched_report TARGET JOB: after a run with sched_evidence, perf sched's
# reports of it (per event: wait time off CPU until woken, scheduling
# delay from wake-up to running, run time, of every thread; -s sums them
# per thread), then that run's evidence goes to the share at once.
sched_report() {
	_p=/tmp/sched.$1.$2
	if [ -e $_p ]; then
		hostrun perf sched timehist -i $_p > $R/sched.$1.$2.timehist.txt 2>&1 || true
		hostrun perf sched timehist -i $_p -s > $R/sched.$1.$2.summary.txt 2>&1 || true
		hostrun perf sched latency -i $_p --sort max > $R/sched.$1.$2.latency.txt 2>&1 || true
		rm -f $_p
	fi
	mkdir -p /mnt/host/bench-partial
	cp $R/*$1.$2.* /mnt/host/bench-partial/ 2>/dev/null || true
}

# run TARGET DAEMON JOB DIRECT FILES FIO_ARGS...: one fio run of JOB on
# TARGET, one fio job per file in FILES (space-separated), reported as one
# group; DAEMON is the daemon serving it, or "-".
run() {
	_t=$1 _dm=$2 _j=$3 _d=$4 _fs=$5
	shift 5
	! sched_timeline $_t || sched_arm $_t $_j
	(
		sleep $((RAMP + 1))
		sample $R/$_t.$_j.pre
		if sched_timeline $_t; then
			_mode=timeline
		else
			_mode=$SCHED,$PERF,${FTRACE_FUNCS:+1},$_t
		fi
		case "$_mode" in
		timeline)
			sched_evidence $_t $_j
			sleep $((RT - 7)) ;;
		perf,*,*,lunbridge | perf,*,*,tcmu-runner | perf,*,*,baseline)
			sched_perf $_t $_j
			sleep $((RT - 6)) ;;
		*,1,*,lunbridge | *,1,*,lunbridge-dio | *,1,*,tcmu-runner | *,1,*,fileio)
			# The window ends when perf stops recording, not when
			# it has written its file (seconds later in the
			# emulated guest, after fio ended).
			hostrun perf record -q -a -g -F 499 -o /tmp/perf.$_t.$_j -- sleep $((RT - 2)) > /dev/null 2>&1 &
			_pp=$!
			sleep $((RT - 2)) ;;
		*,*,1,lunbridge | *,*,1,fileio | *,*,1,baseline)
			ftrace_window 2 > $R/ftrace.$_t.$_j.txt
			sed "s/^/ftrace $_t $_j: /" $R/ftrace.$_t.$_j.txt | head -24
			sleep $((RT - 4)) ;;
		*)
			sleep $((RT - 2)) ;;
		esac
		sample $R/$_t.$_j.post
		[ -z "${_pp:-}" ] || wait $_pp
	) &
	_s=$!
	_per=
	for _f in $_fs; do _per="$_per --name=$_j --filename=$_f"; done
	# shellcheck disable=SC2086
	hostrun fio --eta=never --direct=$_d --ioengine=libaio \
		--size=$FSZ --time_based --runtime=$RT --ramp_time=$RAMP \
		--randrepeat=1 --randseed=20261125 --norandommap --group_reporting \
		--lat_percentiles=1 --output-format=json --output=$R/$_t.$_j.json "$@" $_per ||
		die "fio $_j on $_t ($_fs) failed"
	wait $_s
	! sched_timeline $_t || sched_dump $_t $_j
	[ -z "$SCHED" ] || sched_report $_t $_j
	echo "$_t $_j $_dm" >> $R/runs
	echo "bench: $_j on $_t done"
}

if [ $SETUP = idle ]; then
	sleep 10
	sample $R/idle.ready
	for d in $(sed -n 's|^i[0-9]*: loop \(/dev/sd[a-z]*\) .*|\1|p' /tmp/lb.out); do
		dd if=$d of=/dev/null bs=1M count=1 iflag=direct 2>/dev/null || die "read $d"
	done
	sleep 10
	sample $R/idle.touched
	# The daemon's CPU over a quiet minute: utime+stime of the two
	# samples' proc lines, in clock ticks.
	sleep 60
	sample $R/idle.quiet
	echo "clk_tck $(getconf CLK_TCK)" >> $R/env
	echo "luns $(grep -c '^i[0-9]*: loop /dev/sd' /tmp/lb.out)" >> $R/env
	cat $R/idle.ready $R/idle.touched | grep -E '^(VmRSS|VmHWM|Threads)'
fi

# The target order of every job: lunbridge first, the baseline right after
# it (the two meet the same conditions), then the peer.
ORDER="lunbridge baseline tcmu-runner lunbridge-dio lunbridge-x8 fileio fileio-wb fileio-x8 raw raw-dio"
echo "$JOBS" | while read -r job args; do
	[ -n "$job" ] || continue
	for t in $ORDER; do
		want $t || continue
		eval "_fs=\${T_$(echo $t | tr - _):-}"
		[ -n "$_fs" ] || continue
		case $t in
		raw) _dm=- _d=0 ;;
		raw-dio) _dm=- _d=1 ;;
		fileio*) _dm=- _d=1 ;;
		lunbridge-dio) _dm=dio _d=1 ;;
		baseline) _dm=base _d=1 ;;
		tcmu-runner) _dm=tcmu-runner _d=1 ;;
		*) _dm=lunbridge _d=1 ;;
		esac
		# shellcheck disable=SC2086
		run $t $_dm $job $_d "$_fs" $args
	done
done

sample $R/end
for p in /tmp/perf.*; do
	[ -e "$p" ] || continue
	hostrun perf report -i $p --stdio --no-children --sort comm,dso,symbol --percent-limit 0.7 -g none > $R/${p#/tmp/}.txt 2>&1 || true
	hostrun perf report -i $p --stdio --no-children --sort comm --percent-limit 0.5 -g none > $R/${p#/tmp/}.comm.txt 2>&1 || true
	hostrun perf report -i $p --stdio --no-children --sort symbol --percent-limit 4 -g caller,2,callee,function,percent > $R/${p#/tmp/}.calls.txt 2>&1 || true
	# Every thread's code down to 0.1%: the handlers' user code too.
	hostrun perf report -i $p --stdio --no-children --sort comm,dso,symbol --percent-limit 0.1 -g none > $R/${p#/tmp/}.daemon.txt 2>&1 || true
	# Each thread's time split by where it ran (its program, the
	# kernel, libc, the vDSO), and lunbridge's time by symbol as shares
	# of lunbridge's alone (its threads all carry its name; the peer's
	# are named per device and role): what its user time is made of.
	hostrun perf report -i $p --stdio --no-children --sort comm,dso --percent-limit 0.05 -g none > $R/${p#/tmp/}.dso.txt 2>&1 || true
	hostrun perf report -i $p --stdio --no-children --comms lunbridge --sort dso,symbol --percentage relative \
		--percent-limit 0.3 -g none > $R/${p#/tmp/}.lunbridge.txt 2>&1 || true
done
[ -z "$PEER_PID" ] || peer_stop 5001405000000b50
for o in $OTHERS; do
	loop_unexport ${o%%:*}
	kill -TERM ${o#*:}
	wait ${o#*:} || die "lunbridge ${o#*:} exited with $?"
done
lb_stop
if [ -d $CFG/loopback/naa.5001405000000b10 ]; then loop_unexport 5001405000000b10; fi
if [ -d $CFG/loopback/naa.5001405000000b20 ]; then loop_unexport 5001405000000b20; fi
for f in $CFG/core/fileio_0/*/; do
	[ -d "$f" ] || continue
	fileio_remove "$(basename "$f")"
done
target_leftovers
cp -r $R /mnt/host/bench
