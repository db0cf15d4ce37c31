#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test.sh: the one command that runs every test of lunbridge, unit and
# real-kernel. It installs what the tests need (scripts/install-deps.sh),
# then runs
#   go test -race -count=1 -timeout 10m  <every package but integration/...>
#   go test       -count=1 -timeout 50m  ./integration/...
# (the real-kernel tests boot qemu under TCG; -race would only slow them),
# then a subset of the real-kernel tests again on the second kernel line
#   LUNBRIDGE_KERNEL=6.12 go test -count=1 -timeout 30m -run '<kernel612>' ./integration/
# and ends with a tally line "N passed, N failed, N skipped" over all three.
#
# The first real-kernel run boots Debian 12's 6.1 kernel (the default of
# integration/vmtest); the second boots Debian 12's 6.12 (security archive,
# the kernel of Debian 13) for the tests whose behaviour depends most on
# the kernel: TCMU device lifecycle, kill/restart, the conformance suite,
# open-iscsi, the security setup and dm-multipath over two gateways.
# docs/kernels.md says what the two kernels do differently and what the
# second run costs in wall time (about 7 minutes, measured).
# LUNBRIDGE_SECOND_KERNEL= (empty) skips it.
#
# LUNBRIDGE_INTEGRATION defaults to 1 here, so the real-kernel tests run; set
# it to "require" to fail (not skip) when an asset is missing (CI), or to the
# empty string to skip them. Extra arguments go to every go test run (e.g.
# -run TestFileio).
set -uo pipefail
cd "$(dirname "$0")/.."

export LUNBRIDGE_INTEGRATION=${LUNBRIDGE_INTEGRATION-1}

# A failed install is not fatal here: the tests that need a missing package
# skip with the reason (or fail, with LUNBRIDGE_INTEGRATION=require).
bash scripts/install-deps.sh || echo "test.sh: scripts/install-deps.sh failed (see above); running the tests anyway" >&2

# Go: Debian 12's golang-go is 1.19, too old for go.mod; use /usr/local/go.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
if ! command -v go >/dev/null; then
	echo "test.sh: no go toolchain (expected /usr/local/go/bin/go, $(sed -n 's/^go //p' go.mod) or newer)" >&2
	exit 1
fi
go version

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0

mapfile -t unit < <(go list ./... | grep -v '/integration\(/\|$\)')
mapfile -t integ < <(go list ./integration/...)

echo "== unit tests (-race): ${#unit[@]} packages"
go test -race -count=1 -timeout 10m -v "$@" "${unit[@]}" 2>&1 | tee -a "$log" || rc=1

echo "== real-kernel tests (LUNBRIDGE_INTEGRATION=$LUNBRIDGE_INTEGRATION): ${#integ[@]} packages"
start=$(date +%s)
go test -count=1 -timeout 50m -v "$@" "${integ[@]}" 2>&1 | tee -a "$log" || rc=1
echo "== real-kernel tests took $(($(date +%s) - start)) s"

# The second kernel line: the tests most tied to the kernel, once more.
second=${LUNBRIDGE_SECOND_KERNEL-6.12}
kernel612='^(TestDeviceLifecycle|TestKillRestart|TestConformance|TestOpenISCSI|TestSecurity|TestMultipath)$'
if [ -n "$second" ] && [ -n "$LUNBRIDGE_INTEGRATION" ]; then
	echo "== real-kernel tests on kernel $second: $kernel612"
	start=$(date +%s)
	# "$@" after -run: a -run given to test.sh picks the tests here too.
	LUNBRIDGE_KERNEL=$second go test -count=1 -timeout 30m -v -run "$kernel612" "$@" ./integration/ 2>&1 | tee -a "$log" || rc=1
	echo "== real-kernel tests on kernel $second took $(($(date +%s) - start)) s"
fi

passed=$(grep -acE '^ *--- PASS: ' "$log")
failed=$(grep -acE '^ *--- FAIL: ' "$log")
skipped=$(grep -acE '^ *--- SKIP: ' "$log")
# A package that does not build has no "--- FAIL" line: count it too.
broken=$(grep -acE '^FAIL[[:space:]].*\[(build|setup) failed\]' "$log")
failed=$((failed + broken))
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
	failed=1 # go test failed without naming a test (e.g. a timeout panic)
fi
echo
grep -aE '^(ok|FAIL|---)' "$log" | grep -vE '^ *--- (PASS|SKIP)' || true
# Why each failed test failed, just above the tally (CI shows the end of
# the output): the last lines of its log that name a failure (a test's own
# message, the guest's "FAIL:", a panic, a timeout), or its last lines when
# none does; the guest's shell trace left out.
if [ "$failed" != 0 ]; then
	grep -aoE '^ *--- FAIL: [^ ]+' "$log" | awk '{print $3}' | head -3 | while read -r name; do
		echo "== the end of $name's log:"
		awk -v run="=== RUN   $name" -v end="--- FAIL: $name " '
			function keep(b, line) { if (cnt[b] == 10) { for (i = 1; i < 10; i++) buf[b, i-1] = buf[b, i]; cnt[b]-- } buf[b, cnt[b]++] = substr(line, 1, 300) }
			$0 == run { cnt[0] = 0; cnt[1] = 0; next }
			index($0, end) { b = cnt[1] ? 1 : 0; for (i = 0; i < cnt[b]; i++) print buf[b, i]; exit }
			/gate\.go:[0-9]+: \+ / { cont = 0; next }
			{ keep(0, $0) }
			/_test\.go:[0-9]+: |FAIL: |panic: |timed out|deadline/ { keep(1, $0); cont = 1; next }
			# A kept message'"'"'s own continuation lines (go test indents them).
			cont && /^        / { keep(1, $0); next }
			{ cont = 0 }
		' "$log"
	done
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
