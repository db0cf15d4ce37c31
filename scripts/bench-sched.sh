#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench-sched.sh: per-thread summaries of the scheduler evidence that
# LUNBRIDGE_BENCH_SCHED and LUNBRIDGE_BENCH_GOTRACE leave in a benchmark's
# raw directory (BENCHMARKS.md, "Where the idle third went").
#
#   bench-sched.sh timehist sched.T.J.timehist.txt
#       perf sched timehist per thread: switches, on-CPU ms (run), off-CPU
#       ms (wait: asleep until woken; delay: woken until running), mean and
#       max wake-up latency (sch delay), and the CPUs' idle time
#   bench-sched.sh cycles sched.T.J.timehist.txt
#       one command at a time (a QD1 job): each sleep of fio's I/O thread
#       between submitting and reaping, who ran inside it and for how
#       long (per thread, mean per command), the time no thread ran (the
#       wake-ups), and the median sleep as a timeline
#   bench-sched.sh ftrace sched.T.J.ftrace.txt
#       the ftrace window per thread: on/off-CPU ms, switches, wake-ups
#       with their latency (sched_waking to switched in), the traced
#       functions it called (tcmu_irqcontrol = a kick, uio_poll, futex...)
#       and who woke it
#   bench-sched.sh commands sched.T.J.ftrace.txt [DEV]
#       the timeline window as commands (LUNBRIDGE_BENCH_SCHED's
#       tracepoints; DEV is the LUN's block device, default 8,0): each
#       command's phases (block issue -> LIO takes it from the fabric ->
#       LIO completes it -> block completion -> fio's next issue; at QD1
#       also when a handler thread got the CPU), the kicks (a handler's
#       4-byte write to its UIO device) and the time inside them, the
#       number of commands inside LIO over time, and the window's CPU time
#       split by who ran (a handler thread, anything else, or nothing) and
#       by whether commands were inside LIO, and per CPU by command name
#   bench-sched.sh threads sched.T.J.ftrace.txt [COMM]
#       the same window per thread whose name matches the regular
#       expression COMM (default: both daemons' threads and fio): time on
#       a CPU, how many times it was switched in, and its system calls by
#       name (x86-64 numbers), so that a thread that is neither an
#       executor nor a handler (Go's sysmon: only nanosleep and futex)
#       shows up with its cost
#   bench-sched.sh schedstat T.J.pre T.J.post
#       per thread of the daemons and fio, between two samples of a run
#       (LUNBRIDGE_BENCH_SCHED): on-CPU ms, runnable-but-waiting ms (the
#       run queue: wake-up and preemption latency), asleep ms (the rest
#       of the window), timeslices, voluntary and involuntary switches;
#       and the guest's idle share over the same window
#   bench-sched.sh gotrace lunbridge.gotrace [T0 T1]
#       Go's execution trace per goroutine (named by its root frame):
#       running, runnable (waiting for a P or thread), in system calls
#       (and how many came back without their P: P_lost), waiting by
#       reason; who made it runnable ("no-G": the runtime's
#       netpoller or scheduler, no goroutine); GC cycles and
#       stop-the-world time. T0 T1 bound the window in trace nanoseconds
#       (the trace's Sync events map them to wall-clock time).
#   bench-sched.sh gowait lunbridge.gotrace [PATTERN]
#       for the goroutines whose root frame matches PATTERN (default
#       "executor"): how long they stayed runnable (woken but not yet
#       on a P) after each kind of wait or system call, as count, sum,
#       median, p90 and p99; and where they parked, by reason, at the
#       first frame outside the runtime and the standard library
#   bench-sched.sh gowake lunbridge.gotrace [REASON]
#       for every goroutine woken from a wait whose reason matches REASON
#       (default "chan receive|network"; the executors park on bells in
#       the netpoller, "network", since section 14), grouped by the reason
#       and by where it parked: how long it stayed runnable, and whether
#       some other P was idle (running no goroutine) at the wake-up and it
#       then ran on the waker's P or another
set -euo pipefail
[ $# -ge 2 ] || { sed -n '3,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
mode=$1 file=$2

# The stack rules of the gotrace, gowait and gowake awk programs, for the output of
# go tool trace -d=parsed. After a transition line that set stackfor (a
# goroutine not yet labelled) or parkfor (one that parked), they read its
# TransitionStack: L[g] becomes the outermost frame outside the runtime and
# the standard library (the goroutine's root frame); a park is recorded as
# pg/pw/pf[pn], with the innermost such frame (where it parked).
stackrules='
/^TransitionStack=/ { instack = 1; lastf = ""; lastany = ""; firstf = ""; next }
(/^Stack=/ || /^$/ || /^M=/) && instack {
	instack = 0
	if (stackfor != "") { L[stackfor] = (lastf != "" ? lastf : lastany); stackfor = "" }
	if (parkfor != "") { pn++; pg[pn] = parkfor; pw[pn] = parkwhy; pf[pn] = (firstf != "" ? firstf : lastany); parkfor = "" }
	next
}
instack && $1 !~ /^\// && $1 !~ /\.go:[0-9]+$/ {
	f = $1
	sub(/^github.com\/lunbridge\/lunbridge\//, "", f)
	lastany = f
	if (f ~ /^(runtime|internal|sync|syscall|os|time|context)[.\/]/ || f ~ /golang.org\/x\/sys/) next
	lastf = f
	if (firstf == "") firstf = f
}
'
case $mode in
timehist)
	awk '
$1 ~ /^[0-9]+\.[0-9]+$/ && NF >= 6 {
	task = $3
	if (task ~ /idle/) { idle += $NF; next }
	n[task]++; w[task] += $4; d[task] += $5; r[task] += $6
	if ($5 > md[task]) md[task] = $5
	if (first == "") first = $1
	last = $1
}
END {
	printf "# window %.3f s; idle run ms %.1f\n", last - first, idle
	printf "%-32s %7s %9s %9s %9s %8s %8s\n", "thread", "switch", "run_ms", "wait_ms", "delay_ms", "dly_avg", "dly_max"
	for (t in n) printf "%-32s %7d %9.1f %9.1f %9.1f %8.3f %8.3f\n", t, n[t], r[t], w[t], d[t], d[t]/n[t], md[t] | "sort -k3 -n -r"
}
' "$file"
	;;
ftrace)
	awk '
function ts(s) { sub(/:$/, "", s); return s + 0 }
/^#/ { next }
{
	# task-pid [cpu] flags time: event
	for (i = 1; i <= NF; i++) if ($i ~ /^\[[0-9]+\]$/) break
	if (i > NF) next
	task = $1; for (j = 2; j < i; j++) task = task " " $j  # comm may hold spaces
	t = ts($(i + 2)); ev = $(i + 3)
	if (first == 0) first = t; last = t
	if (ev == "sched_switch:") {
		match($0, /prev_comm=.* prev_pid=[0-9]+/); p = substr($0, RSTART + 10, RLENGTH - 10); sub(/ prev_pid=/, "-", p)
		match($0, /next_comm=.* next_pid=[0-9]+/); n = substr($0, RSTART + 10, RLENGTH - 10); sub(/ next_pid=/, "-", n)
		if (p in on) { run[p] += t - on[p]; delete on[p] }
		on[n] = t; sw[n]++; names[n] = 1; names[p] = 1
		if (n in wk) { l = t - wk[n]; lat[n] += l; nl[n]++; if (l > ml[n]) ml[n] = l; delete wk[n] }
		next
	}
	if (ev == "sched_waking:") {
		match($0, /comm=.* pid=[0-9]+/); w = substr($0, RSTART + 5, RLENGTH - 5); sub(/ pid=/, "-", w)
		if (!(w in wk)) wk[w] = t
		waker[w, task]++; names[w] = 1
		next
	}
	if (ev == "sched_wakeup:") next
	f = ev; calls[task, f]++; fn[f] = 1; names[task] = 1
}
END {
	for (n in on) run[n] += last - on[n]
	win = last - first
	printf "# window %.1f ms\n", win * 1000
	printf "%-26s %8s %8s %6s %6s %8s %8s  %s\n", "thread", "on_ms", "off_ms", "sw", "woken", "wlat_us", "wmax_us", "calls; woken by"
	for (n in names) {

		c = ""
		for (f in fn) if (calls[n, f]) c = c " " f "=" calls[n, f]
		wb = ""
		for (k in waker) { split(k, kk, SUBSEP); if (kk[1] == n) wb = wb " " kk[2] "=" waker[k] }
		if (run[n] == 0 && c == "") continue
		printf "%-26s %8.2f %8.2f %6d %6d %8.1f %8.1f %s;%s\n", n, run[n] * 1000, (win - run[n]) * 1000, sw[n], nl[n], nl[n] ? lat[n] / nl[n] * 1e6 : 0, ml[n] * 1e6, c, wb
	}
}
' "$file"
	;;
commands)
	awk -v DEV="${3:-8,0}" -v HANDLER='^(lunbridge|cmdproc|aio-|tcmu-runner)' '
function ts(s) { sub(/:$/, "", s); return s + 0 }
# lba(cdb): the LBA of a READ/WRITE(10) or (16) from its bytes in hex.
function hex(x) { x = tolower(x); return index("0123456789abcdef", substr(x, 1, 1)) * 16 + index("0123456789abcdef", substr(x, 2, 1)) - 17 }
function lba(b,    n, v, k) {
	n = split(b, h, " "); v = 0
	if (h[1] ~ /^(28|2a|2A)$/) { for (k = 3; k <= 6; k++) v = v * 256 + hex(h[k]); return v }
	if (h[1] ~ /^(88|8a|8A)$/) { for (k = 3; k <= 10; k++) v = v * 256 + hex(h[k]); return v }
	return -1
}
function pname(s) { sub(/-[0-9]+$/, "", s); return s }
# advance(t): account the time since the last event to the state it was in.
function advance(t,    dt, c, st, k, cls) {
	dt = t - last; last = t
	if (dt <= 0 || ncpus == 0) return
	for (c in known) {
		k = (nh > 0 ? "with" : "none")
		if (cur[c] == "") st = "idle"; else if (pname(cur[c]) ~ HANDLER) st = "handler"; else st = "other"
		cpu_t[k, st] += dt
		cls = (cur[c] == "" ? "idle" : pname(cur[c])); sub(/\/.*/, "", cls)
		per[c, cls] += dt; clss[cls] = 1
	}
	inq[nh + 0] += dt; span += dt
}
/^#/ { next }
{
	for (i = 1; i <= NF; i++) if ($i ~ /^\[[0-9]+\]$/) break
	if (i > NF) next
	c = substr($i, 2, length($i) - 2) + 0
	task = $1; for (j = 2; j < i; j++) task = task " " $j
	t = ts($(i + 2)); ev = $(i + 3)
	advance(t)
	if (ev == "sched_switch:") {
		match($0, /next_comm=.* next_pid=[0-9]+/); n = substr($0, RSTART + 10, RLENGTH - 10); sub(/ next_pid=/, "-", n)
		if (!(c in known)) { known[c] = 1; ncpus++ }
		cur[c] = ($0 ~ / next_pid=0( |$)/) ? "" : n
		if (cur[c] != "" && pname(n) ~ HANDLER && waitrun != "") { ph["2 wake-up: LIO start -> a handler thread on a CPU"] += t - waitrun; phn["2 wake-up: LIO start -> a handler thread on a CPU"]++; waitrun = "" }
		next
	}
	# A kick: a handler thread writes the 4-byte irq word to its UIO device
	# (tcmu_irqcontrol: under the device cmdr_lock the kernel walks the
	# completions, copying READ data out of the data area, for as long as
	# cmd_tail keeps moving).
	if (ev == "sys_enter:" && $(i + 5) == 1 && pname(task) ~ HANDLER) {
		split($0, ka, "("); split(ka[2], kb, ", ")
		if (kb[3] == "4") { kst[task] = t; nkick++ }
		next
	}
	if (ev == "sys_exit:" && $(i + 5) == 1 && (task in kst)) {
		k = t - kst[task]; kin += k; if (k > kmax) kmax = k; delete kst[task]; nkend++
		next
	}
	if (ev == "block_rq_issue:" || ev == "block_rq_complete:") {
		if ($(i + 4) != DEV) next
		for (k = i + 5; k <= NF; k++) if ($k == "+") break
		sec = $(k - 1)
		if (ev == "block_rq_issue:") {
			iss[sec] = t
			if (lastdone != "") { ph["5 initiator: block completion -> next block issue"] += t - lastdone; phn["5 initiator: block completion -> next block issue"]++ ; lastdone = "" }
		} else if (sec in iss) {
			if (sec in cmp) { ph["4 back: LIO completion -> block completion"] += t - cmp[sec]; phn["4 back: LIO completion -> block completion"]++; delete cmp[sec] }
			tot += t - iss[sec]; ntot++; delete iss[sec]; lastdone = t
		}
		next
	}
	if (ev == "target_sequencer_start:" || ev == "target_cmd_complete:") {
		match($0, /CDB [0-9a-fA-F ]+/); b = substr($0, RSTART + 4, RLENGTH - 4); sec = lba(b)
		match($0, /tag 0x[0-9a-f]+/); tg = substr($0, RSTART + 4, RLENGTH - 4)
		if (ev == "target_sequencer_start:") {
			seq[tg] = t; nh++; if (nh > maxnh) maxnh = nh
			if (sec in iss) { ph["1 front: block issue -> LIO start"] += t - iss[sec]; phn["1 front: block issue -> LIO start"]++ }
			if (nh == 1) {
				hr = 0; for (cc in known) if (cur[cc] != "" && pname(cur[cc]) ~ HANDLER) hr = 1
				if (!hr) waitrun = t
			}
		} else if (tg in seq) {
			ph["3 inside LIO: LIO start -> LIO completion"] += t - seq[tg]; phn["3 inside LIO: LIO start -> LIO completion"]++
			delete seq[tg]; nh--
			if (sec >= 0) cmp[sec] = t
		}
		next
	}
}
END {
	printf "# window %.1f ms over %d CPUs; %d commands completed; mean block latency %.1f us; at most %d commands inside LIO at once\n", span * 1000, ncpus, ntot, ntot ? tot / ntot * 1e6 : 0, maxnh
	printf "# phases (means; 2 only counts commands that found no handler thread on a CPU while nothing else was inside LIO):\n"
	for (k in ph) printf "%-58s %8d %10.1f us\n", k, phn[k], phn[k] ? ph[k] / phn[k] * 1e6 : 0 | "sort"
	close("sort")
	printf "# kicks (4-byte writes to the UIO device): %d, %d ended in the window, %.1f ms inside them (%.0f%% of the window), mean %.0f us, max %.0f us\n", nkick, nkend, kin * 1000, span ? 100 * kin / span : 0, nkend ? kin / nkend * 1e6 : 0, kmax * 1e6
	printf "# time by commands inside LIO (LIO start to LIO completion):\n"
	for (k in inq) printf "  %3d inside: %6.1f%%\n", k, 100 * inq[k] / span | "sort -n"
	close("sort -n")
	printf "# CPU time (ms, summed over CPUs) by who ran, with commands inside LIO or none:\n"
	printf "%-8s %10s %10s %10s\n", "inside", "handler", "other", "idle"
	for (k = 0; k < 2; k++) { w = (k ? "with" : "none"); printf "%-8s %10.1f %10.1f %10.1f\n", w, cpu_t[w, "handler"] * 1000, cpu_t[w, "other"] * 1000, cpu_t[w, "idle"] * 1000 }
	printf "# the time of each CPU (ms) by who ran (comm without its CPU suffix):\n"
	for (cls in clss) {
		line = sprintf("%-16s", cls); sum = 0
		for (c = 0; c < ncpus; c++) { line = line sprintf(" cpu%d %8.1f", c, per[c, cls] * 1000); sum += per[c, cls] }
		if (sum * 1000 >= 1) print line | "sort -k3 -n -r"
	}
	close("sort -k3 -n -r")
}
' "$file"
	;;
threads)
	awk -v COMM="${3:-^(lunbridge|cmdproc|aio-|tcmu-runner|fio)}" '
BEGIN {
	split("0 read 1 write 7 poll 17 pread64 18 pwrite64 27 mincore 35 nanosleep 74 fsync 75 fdatasync 202 futex 208 io_getevents 209 io_submit 230 clock_nanosleep 232 epoll_wait 271 ppoll 281 epoll_pwait 285 fallocate 295 preadv 296 pwritev 327 preadv2 328 pwritev2", a, " ")
	for (i = 1; i < length(a); i += 2) name[a[i]] = a[i + 1]
}
/^#/ { next }
{
	for (i = 1; i <= NF; i++) if ($i ~ /^\[[0-9]+\]$/) break
	if (i > NF) next
	c = $i; t = $(i + 2); sub(/:$/, "", t); t += 0
	if (first == "") first = t
	last = t
}
/ sched_switch: / {
	if (c in since) { run[cur[c]] += t - since[c]; runs[cur[c]]++ }
	match($0, /next_comm=.* next_pid=[0-9]+/); n = substr($0, RSTART + 10, RLENGTH - 10); sub(/ next_pid=/, "-", n)
	cur[c] = n; since[c] = t
	next
}
/ sys_enter: NR / {
	for (k = i + 3; k <= NF; k++) if ($k == "NR") break
	nr = $(k + 1); task = $1; for (j = 2; j < i; j++) task = task " " $j
	sc[task, (nr in name ? name[nr] : "NR" nr)]++; tasks[task] = 1
}
END {
	for (c in since) { run[cur[c]] += last - since[c] }
	printf "# window %.1f ms\n", (last - first) * 1e3
	printf "%-24s %9s %6s  %s\n", "thread", "on_cpu_ms", "runs", "system calls"
	for (th in run) {
		if (th !~ COMM) continue
		calls = ""
		for (k in sc) { split(k, b, SUBSEP); if (b[1] == th) calls = calls sprintf("%s %d, ", b[2], sc[k]) }
		sub(/, $/, "", calls)
		printf "%-24s %9.1f %6d  %s\n", th, run[th] * 1e3, runs[th], calls | "sort -k2 -n -r"
	}
}
' "$file"
	;;
schedstat)
	[ $# -eq 3 ] || { echo "usage: $0 schedstat PRE POST" >&2; exit 2; }
	awk '
	FNR == 1 { f++ }
	$1 == "uptime" { up[f] = $2 }
	$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; tot[f] = t; idle[f] = $5 + $6 }
	$1 == "thread" {
		k = $2 " " $3 " " $4
		if (f == 1) { on0[k] = $5; rq0[k] = $6; sl0[k] = $7; v0[k] = $8; i0[k] = $9; next }
		seen[k] = 1; on[k] = $5; rq[k] = $6; sl[k] = $7; v[k] = $8; iv[k] = $9
	}
	END {
		w = (up[2] - up[1]) * 1000
		printf "# window %.0f ms; guest idle %.1f%%\n", w, 100 * (idle[2] - idle[1]) / (tot[2] - tot[1])
		printf "%-34s %8s %8s %8s %7s %7s %7s\n", "owner tid comm", "on_ms", "runq_ms", "asleep", "slices", "vol", "invol"
		for (k in seen) {
			if (!(k in on0)) continue  # started inside the window
			o = (on[k] - on0[k]) / 1e6; r = (rq[k] - rq0[k]) / 1e6
			if (o < 0.05 && r < 0.05) continue
			printf "%-34s %8.1f %8.1f %8.1f %7d %7d %7d\n", k, o, r, w - o - r, sl[k] - sl0[k], v[k] - v0[k], iv[k] - i0[k] | "sort -k4 -n -r"
		}
	}' "$2" "$3"
	;;
gotrace)
	go tool trace -d=parsed "$file" | awk -v T0="${3:-0}" -v T1="${4:-0}" '
# scheduler without a goroutine); GC cycles and stop-the-world time.
function lab(g) { return (g in L) ? L[g] "#" g : "g" g }
function inwin(t) { return (T0 == 0 && T1 == 0) || (t >= T0 && t <= T1) }
/^M=/ {
	ev = ""; stackfor = ""
	if ($0 !~ / StateTransition / && $0 !~ / Range(Begin|End) /) next
	match($0, /Time=[0-9]+/); t = substr($0, RSTART + 5, RLENGTH - 5) + 0
	split($3, gg, "="); curg = gg[2]
	if ($0 ~ / RangeBegin / && $0 ~ /Name="GC concurrent mark phase"/) { if (inwin(t)) gc++ }
	if ($0 ~ / RangeBegin / && $0 ~ /stop-the-world/) { stw0[curg] = t }
	if ($0 ~ / RangeEnd / && $0 ~ /stop-the-world/ && (curg in stw0)) { if (inwin(t)) { stw += t - stw0[curg]; nstw++ }; delete stw0[curg] }
	if ($0 !~ /GoID=/) next
	match($0, /GoID=[0-9]+/); g = substr($0, RSTART + 5, RLENGTH - 5)
	match($0, /[A-Za-z]+->[A-Za-z]+/); split(substr($0, RSTART, RLENGTH), st, "->")
	match($0, /Reason="[^"]*"/); rs = substr($0, RSTART + 8, RLENGTH - 9)
	if ((g in since) && inwin(t)) {
		d = t - since[g]
		k = state[g]; if (k == "Waiting") k = "W:" why[g]
		acc[g, k] += d; keys[k] = 1
		if (k == "Runnable") { nrun[g]++; if (d > maxrun[g]) maxrun[g] = d }
	}
	if (st[2] == "Runnable" && st[1] == "Waiting" && inwin(t)) {
		un[(curg == -1 ? "no-G" : "g" curg), g]++
	}
	if (st[2] == "Syscall" && inwin(t)) nsys[g]++
	# A system call that returns to a goroutine that lost its P (sysmon
	# retook it, or the call blocked) comes back Runnable, not Running.
	if (st[1] == "Syscall" && st[2] == "Runnable" && inwin(t)) plost[g]++
	state[g] = st[2]; since[g] = t; why[g] = rs; seen[g] = 1
	if (st[1] == "Running" && (st[2] == "Waiting" || st[2] == "Syscall") && !(g in L)) stackfor = g
	next
}
'"$stackrules"'
END {
	if (gc != "" || nstw) printf "# GC cycles %d; stop-the-world %d, %.3f ms\n", gc, nstw, stw / 1e6
	printf "%-44s %9s %9s %9s %7s %6s %9s  %s\n", "goroutine (its root frame)", "run_ms", "runnbl_ms", "sysc_ms", "nsysc", "P_lost", "lat_max", "waiting ms by reason"
	for (g in seen) {
		tot = 0
		for (k in keys) tot += acc[g, k]
		if (tot == 0) continue
		w = ""
		for (k in keys) if (k ~ /^W:/ && acc[g, k] > 0) w = w sprintf(" %s=%.0f", substr(k, 3), acc[g, k] / 1e6)
		printf "%-44s %9.1f %9.1f %9.1f %7d %6d %9.3f %s\n", substr(lab(g), 1, 44), acc[g, "Running"] / 1e6, acc[g, "Runnable"] / 1e6, acc[g, "Syscall"] / 1e6, nsys[g], plost[g], maxrun[g] / 1e6, w | "sort -k2 -n -r | head -25"
	}
	close("sort -k2 -n -r | head -25")
	print "# made runnable by (unblocker -> goroutine): count"
	for (k in un) { split(k, p, SUBSEP); u = p[1]; if (u != "no-G") { sub(/^g/, "", u); u = lab(u) }; printf "%s -> %s %d\n", u, lab(p[2]), un[k] | "sort -k4 -n -r | head -15" }
}
'
	;;
gowait)
	go tool trace -d=parsed "$file" | awk -v PAT="${3:-executor}" '
function lab(g) { return (g in L) ? L[g] : "g" g }
/^M=/ {
	stackfor = ""; parkfor = ""
	if ($0 !~ / StateTransition / || $0 !~ /GoID=/) next
	match($0, /Time=[0-9]+/); t = substr($0, RSTART + 5, RLENGTH - 5) + 0
	match($0, /GoID=[0-9]+/); g = substr($0, RSTART + 5, RLENGTH - 5)
	match($0, /[A-Za-z]+->[A-Za-z]+/); split(substr($0, RSTART, RLENGTH), st, "->")
	match($0, /Reason="[^"]*"/); rs = substr($0, RSTART + 8, RLENGTH - 9); gsub(/ /, "_", rs)
	if (state[g] == "Runnable" && (g in since)) { n++; rg[n] = g; rk[n] = prev[g]; rd[n] = t - since[g] }
	if (st[2] == "Runnable") prev[g] = (st[1] == "Waiting" ? "wake:" (why[g] == "" ? "-" : why[g]) : tolower(st[1]))
	if (st[1] == "Running" && st[2] == "Waiting") { parkfor = g; parkwhy = (rs == "" ? "-" : rs) }
	if (st[1] == "Running" && (st[2] == "Waiting" || st[2] == "Syscall") && !(g in L)) stackfor = g
	state[g] = st[2]; since[g] = t; why[g] = rs
	next
}
'"$stackrules"'
END {
	for (i = 1; i <= n; i++) if (lab(rg[i]) ~ PAT) print "R", rk[i], rd[i]
	for (i = 1; i <= pn; i++) if (lab(pg[i]) ~ PAT) print "P", pw[i], pf[i]
}
' | sort -k1,1 -k2,2 -k3,3n | awk '
function flush() {
	if (key == "") return
	printf "%-26s %7d %9.1f %9.1f %9.1f %9.1f\n", key, m, sum / 1e6, v[int((m - 1) * 0.5) + 1] / 1e3, v[int((m - 1) * 0.9) + 1] / 1e3, v[int((m - 1) * 0.99) + 1] / 1e3
}
$1 == "R" {
	if ($2 != key) { if (!hdr) { printf "%-26s %7s %9s %9s %9s %9s\n", "runnable after", "count", "sum_ms", "p50_us", "p90_us", "p99_us"; hdr = 1 }; flush(); key = $2; m = 0; sum = 0 }
	m++; v[m] = $3; sum += $3
	next
}
$1 == "P" { park[$2 " at " $3]++ }
END {
	flush()
	print "# parked (reason at frame): count"
	for (k in park) printf "%s %d\n", k, park[k] | "sort -k4 -n -r | head -20"
}
'
	;;
cycles)
	# Every line of perf sched timehist is a thread switched out at
	# time T after running R ms: it ran [T-R, T]. fio's I/O thread (the
	# fio thread with the most switches) sleeps after each submission
	# until the completion wakes it; at queue depth 1 each of its sleeps
	# is one command's trip through the kernel and the handler. For each
	# sleep: who ran inside it, when and how long, and how much of it no
	# thread ran at all (every vCPU idle, or in interrupts: the wake-ups).
	awk '
$1 ~ /^[0-9]+\.[0-9]+$/ && NF >= 6 && $3 !~ /idle/ {
	n++; T[n] = $1 * 1000; R[n] = $6; task[n] = $3; cpu[n] = $2
	if ($3 ~ /^fio\[/) fsw[$3]++
	if ($6 > maxrun) maxrun = $6
}
function group(t) { sub(/\[.*/, "", t); sub(/\/[0-9]+:[0-9]+.*/, "", t); sub(/-[0-9]+$/, "", t); return t }
END {
	for (t in fsw) if (fsw[t] > best) { best = fsw[t]; fio = t }
	prev = 0; j0 = 1
	for (i = 1; i <= n; i++) {
		if (task[i] != fio) continue
		if (prev) {
			ws = T[prev]; we = T[i] - R[i]
			if (we > ws) {
				c++; len = we - ws; tot += len; lens[c] = len
				while (j0 < n && T[j0] < ws) j0++
				m = 0
				for (j = j0; j <= n && T[j] - R[j] <= we + maxrun; j++) {
					if (j == i || task[j] == fio) continue
					s0 = T[j] - R[j]; e0 = T[j]
					if (s0 < ws) s0 = ws
					if (e0 > we) e0 = we
					if (e0 <= s0) continue
					m++; st[m] = s0; en[m] = e0
					g = group(task[j]); on[g] += e0 - s0; runs[g]++
					line[c, m] = sprintf("%9.3f %9.3f  %s %s", s0 - ws, e0 - s0, cpu[j], task[j])
				}
				nl[c] = m
				# union of the run intervals: the time some thread ran
				for (a = 2; a <= m; a++) { x = st[a]; y = en[a]; for (b = a - 1; b >= 1 && st[b] > x; b--) { st[b+1] = st[b]; en[b+1] = en[b] }; st[b+1] = x; en[b+1] = y }
				cov = 0; cs = -1
				for (a = 1; a <= m; a++) {
					if (cs < 0 || st[a] > ce) { if (cs >= 0) cov += ce - cs; cs = st[a]; ce = en[a] } else if (en[a] > ce) ce = en[a]
				}
				if (cs >= 0) cov += ce - cs
				covered += cov
			}
		}
		prev = i
	}
	if (c == 0) { print "# no cycles of " fio; exit }
	# the cycle of median length, as a timeline
	for (a = 1; a <= c; a++) idx[a] = a
	for (a = 2; a <= c; a++) { x = idx[a]; for (b = a - 1; b >= 1 && lens[idx[b]] > lens[x]; b--) idx[b+1] = idx[b]; idx[b+1] = x }
	med = idx[int((c + 1) / 2)]
	printf "# %s: %d sleeps (commands at QD1), mean %.3f ms, median %.3f ms\n", fio, c, tot / c, lens[med]
	printf "# per sleep: some thread on a CPU %.3f ms, no thread at all %.3f ms (%.0f%%)\n", covered / c, (tot - covered) / c, 100 * (tot - covered) / tot
	printf "%-28s %10s %12s\n", "thread (by name)", "runs/cmd", "ms/cmd"
	for (g in on) printf "%-28s %10.2f %12.3f\n", g, runs[g] / c, on[g] / c | "sort -k3 -n -r"
	close("sort -k3 -n -r")
	printf "# the median sleep (%.3f ms): start ms from fio asleep, ms on CPU, [cpu] thread\n", lens[med]
	for (a = 1; a <= nl[med]; a++) print line[med, a]
}
' "$file"
	;;
gowake)
	go tool trace -d=parsed "$file" | awk -v WHY="${3:-chan receive|network}" '
/^M=/ {
	stackfor = ""; parkfor = ""
	# the parks stackrules recorded since the last line: where each parked
	for (; seenpn < pn; seenpn++) site[pg[seenpn + 1]] = pf[seenpn + 1]
	if ($0 !~ / StateTransition / || $0 !~ /GoID=/) next
	match($0, /P=-?[0-9]+/); p = substr($0, RSTART + 2, RLENGTH - 2) + 0
	match($0, /Time=[0-9]+/); t = substr($0, RSTART + 5, RLENGTH - 5) + 0
	match($0, /GoID=[0-9]+/); g = substr($0, RSTART + 5, RLENGTH - 5)
	match($0, /[A-Za-z]+->[A-Za-z]+/); tr = substr($0, RSTART, RLENGTH)
	if (p > np - 1) np = p + 1
	# what each P runs: a goroutine (run), one in a system call (sys),
	# or nothing (idle)
	if (tr ~ /->Running$/ && p >= 0) { cur[p] = g; ps[p] = "run"; onp[g] = p }
	if (tr == "Running->Syscall" && (g in onp)) ps[onp[g]] = "sys"
	if (tr ~ /^Running->(Waiting|Runnable)$/ && (g in onp) && cur[onp[g]] == g) ps[onp[g]] = "idle"
	if (tr ~ /^Syscall->Runnable$/ && (g in onp) && cur[onp[g]] == g) ps[onp[g]] = "idle"
	if (tr == "Running->Waiting") {
		match($0, /Reason="[^"]*"/); rs = substr($0, RSTART + 8, RLENGTH - 9)
		if (rs ~ WHY) { parkfor = g; parkwhy = rs; why[g] = rs; site[g] = "?" } else delete why[g]
	}
	if (tr == "Waiting->Runnable" && (g in why)) {
		idle = "no"
		for (q = 0; q < np; q++) if (q != p && ps[q] != "run" && ps[q] != "sys") idle = "yes"
		wk[g] = why[g] " at " site[g] "|" idle; wt[g] = t; wp[g] = p; delete why[g]
	}
	if (tr == "Runnable->Running" && (g in wt)) {
		k = wk[g] "|" (p == wp[g] ? "waker" : "other")
		n[k]++; sum[k] += t - wt[g]
		delete wt[g]
	}
	next
}
'"$stackrules"'
END {
	printf "%-52s %8s %8s %8s %12s\n", "woken from (reason at frame)", "other_P", "ran_on", "count", "runnable_us"
	for (k in n) { split(k, a, "|"); printf "%-52s %8s %8s %8d %12.1f\n", substr(a[1], 1, 52), (a[2] == "yes" ? "idle" : "busy"), a[3], n[k], sum[k] / n[k] / 1e3 | "sort -k4 -n -r" }
}
'
	;;
*)
	echo "$0: unknown mode $mode (timehist, cycles, ftrace, commands, threads, schedstat, gotrace, gowait or gowake)" >&2
	exit 2
	;;
esac
