# SPDX-License-Identifier: Apache-2.0
# Guest shell shared by the tests that run the lunbridge command in the
# guest: guestScript puts it before each scenario.
LB=/mnt/host/lunbridge
# lb_start OUT ARGS...: start "lunbridge ARGS..." in the background with its
# stdout in OUT.out and stderr in OUT.err; wait until it says it is ready.
lb_start() {
	_o=$1; shift
	LB_OUT=$_o
	$LB "$@" > "$_o.out" 2> "$_o.err" &
	LB_PID=$!
	_n=0
	until grep -q 'lunbridge: ready' "$_o.out"; do
		_n=$((_n + 1))
		if [ $_n -gt 1200 ] || ! kill -0 $LB_PID 2>/dev/null; then
			cat "$_o.out" "$_o.err"
			die "lunbridge did not become ready"
		fi
		sleep 0.1
	done
	cat "$_o.out"
}
# lb_stop: SIGTERM lunbridge and check it exits 0.
lb_stop() {
	kill -TERM $LB_PID
	wait $LB_PID || { _rc=$?; cat "$LB_OUT.err"; die "lunbridge exited with $_rc"; }
}
# lb_dev OUT NAME: the /dev/sdX lunbridge printed for LUN NAME.
lb_dev() { sed -n "s|^$2: loop \(/dev/sd[a-z]*\) .*|\1|p" "$1.out"; }
# stat_of FILE KEY: the value of KEY in a "key value" stats file.
stat_of() { sed -n "s/^$2 //p" "$1"; }

# show_on_failure FILE...: when the script exits with a failure (a die, or
# a command failing under set -e), print the last lines of each FILE that
# exists, so that the test's log says what the daemons saw.
show_on_failure() {
	SHOW_FILES="$*"
	trap '_rc=$?; if [ $_rc != 0 ]; then for _f in $SHOW_FILES; do [ -e "$_f" ] && { echo "== last lines of $_f:"; tail -n 15 "$_f"; }; done; fi' EXIT
}

# wait_log FILE TEXT [SECONDS]: wait up to SECONDS (default 60) until FILE
# contains TEXT; print FILE and die if it never does.
wait_log() {
	_n=$(( ${3:-60} * 10 ))
	until grep -q "$2" "$1"; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || { cat "$1"; die "no \"$2\" in $1"; }
		sleep 0.1
	done
}

# Checks: a scenario of many checks defines c_NAME for each and runs
# `check NAME`; the host reads /mnt/host/checks ("NAME ok|FAIL") and each
# check's log /mnt/host/check-NAME.log, so every check is reported on its
# own (guestChecks in integration/guestlib_test.go).

# check NAME: run c_NAME and record its result. The subshell runs in the
# background and is waited for, so errexit holds inside it.
check() {
	_rc=0
	( set -e; c_$1 ) > /mnt/host/check-$1.log 2>&1 &
	wait $! || _rc=$?
	if [ $_rc = 0 ]; then
		echo "$1 ok" >> /mnt/host/checks
	else
		echo "$1 FAIL" >> /mnt/host/checks
		tail -n 30 /mnt/host/check-$1.log
	fi
}

# record KEY VALUE: a measurement, a line of /mnt/host/times.
record() { echo "$1 $2" >> /mnt/host/times; }

# until_true SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
until_true() {
	_n=$(($1 * 5)); shift
	until "$@"; do
		_n=$((_n - 1)); [ $_n -gt 0 ] || return 1
		sleep 0.2
	done
}

# lun_dev LUN: the /dev/sdX of a LUN, from its info in the FUSE view.
lun_dev() { sed -n 's/^fabric_path //p' /run/lunbridge/$1/info; }
# snap_state LUN SNAP: a snapshot's state in the FUSE view.
snap_state() { cat /run/lunbridge/$1/snapshots/$2/state; }
not_copying() { [ "$(snap_state $1 $2)" != copying ]; }
