#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench.sh: the lunbridge benchmark in one command (BENCHMARKS.md).
#
# Why two bench.sh: this one is the host's entry point (installs the
# dependencies, runs TestBenchFio and the Go benchmarks, writes
# bench-out/); integration/testdata/bench.sh is the guest half that
# TestBenchFio embeds and runs inside the VM. Neither can be the other:
# one runs as root on the host with go, the other in the guest's shell.
#
# Boots the harness VM once per setup (tmpfs, ext4 on a virtio disk,
# GlusterFS, 8 LUNs, 64 idle LUNs) and runs fio against lunbridge, LIO's
# in-kernel fileio backstore (O_DSYNC and write-back) and the backing file
# itself, side by side; prints issue 14's targets and the tables and writes
# them to bench-out/ (latest.md and a timestamped directory with fio's raw
# JSON). Then runs the Go benchmarks
# of the ring + SCSI path (go test -bench) unless BENCH_GO=0.
#
# Knobs (environment): LUNBRIDGE_BENCH_SETUPS (comma list, default all),
# LUNBRIDGE_BENCH_RUNTIME (s per run, default 10),
# LUNBRIDGE_BENCH_RAMP (s, default 2), LUNBRIDGE_BENCH_SIZE_MB (default 256),
# LUNBRIDGE_BENCH_JOBS, LUNBRIDGE_BENCH_TARGETS (comma lists),
# LUNBRIDGE_BENCH_FLAGS (extra "lunbridge export" flags),
# LUNBRIDGE_BENCH_ENV (its environment, e.g. GOMAXPROCS=1),
# LUNBRIDGE_BENCH_BASELINE=/path/to/other/lunbridge (side-by-side target
# "baseline"), LUNBRIDGE_BENCH_BASELINE_FLAGS and _ENV,
# LUNBRIDGE_BENCH_PEER=/dir (tcmu-runner built locally: target "tcmu-runner"),
# LUNBRIDGE_BENCH_PEER_SRC=/src (a tcmu-runner source tree: built first with
# scripts/build-peer.sh into bench-out/peer-build, which then is the peer),
# LUNBRIDGE_BENCH_PERF=1 (perf profiles of the guest; skews the numbers),
# LUNBRIDGE_BENCH_FTRACE=1 (time the kernel's data-path functions with
# ftrace; skews the numbers), LUNBRIDGE_BENCH_SCHED=1 (perf sched, a
# sched_switch/wakeup timeline and qfull counts for lunbridge and the peer),
# LUNBRIDGE_BENCH_GOTRACE=1 (lunbridge's Go execution trace),
# LUNBRIDGE_BENCH_CLOCK=tsc|default (the
# guest's clocksource, default tsc), LUNBRIDGE_BENCH_BOOTS=N (run it all N
# times, default 1: the chart, bench-out/chart.png, shows the medians and
# the spread).
# See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Go: Debian 12's golang-go is too old for go.mod; use /usr/local/go.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
out=${LUNBRIDGE_BENCH_OUT:-bench-out}
mkdir -p "$out"
if [ -n "${LUNBRIDGE_BENCH_PEER_SRC:-}" ] && [ -z "${LUNBRIDGE_BENCH_PEER:-}" ]; then
	LUNBRIDGE_BENCH_PEER=$(bash scripts/build-peer.sh "$LUNBRIDGE_BENCH_PEER_SRC" "$out/peer-build" | tail -1)
	export LUNBRIDGE_BENCH_PEER
fi
# Each boot writes a timestamped directory; the chart takes the medians over
# the boots of this invocation.
boots=${LUNBRIDGE_BENCH_BOOTS:-1}
tsvs=()
for i in $(seq 1 "$boots"); do
	log="$out/fio.log"
	[ "$boots" = 1 ] || log="$out/fio.$i.log"
	LUNBRIDGE_INTEGRATION="${LUNBRIDGE_INTEGRATION:-1}" LUNBRIDGE_BENCH=1 \
		go test -count=1 -run '^TestBenchFio$' -v -timeout 90m ./integration/ 2>&1 |
		grep -v 'gate.go:[0-9]*: +' | tee "$log"
	# go test -v prints the table indented inside the log; show it plainly.
	echo
	cat "$out/latest.md"
	tsvs+=("$(ls -td "$out"/2*/ | head -1)chart.tsv")
done
bash scripts/bench-chart.sh "$out/chart.png" "${tsvs[@]}"
if [ "${BENCH_GO:-1}" != 0 ]; then
	echo
	go test -run '^$' -bench 'BenchmarkServe$' -benchmem -count=1 ./bridge/ | tee "$out/go-bench.txt"
fi
