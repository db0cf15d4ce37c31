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
