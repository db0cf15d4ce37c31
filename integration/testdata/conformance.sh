# SPDX-License-Identifier: Apache-2.0
# Guest side of TestConformance (lunbridgeLib and the guest library are
# sourced first; LB_IQN, FILEIO_IQN, INIT1, INIT2 and SIZE are set before).
# One boot exports a lunbridge LUN and an in-kernel fileio LUN over iSCSI;
# the host runs libiscsi's iscsi-test-cu against both, one after the other.

# LIO keeps persistent reservation state here; without it PR OUT fails
# with 02/08/00 (measured on Debian's 6.1 in the test VM).
mkdir -p /etc/target/pr
# The suite's two initiator names, and nobody else, may log in to lunbridge.
lb_start /tmp/lb export --fabric iscsi --iqn "$LB_IQN" \
	--initiator "$INIT1" --initiator "$INIT2" \
	--size "$SIZE" --name conf /tmp/conf.img
# When a run of the suite does not finish in time the host signals
# stuck-lunbridge or stuck-fileio: log the blocked tasks (sysrq w) and
# LIO's view of each device, once per signal.
dump_when_stuck() {
	while ! signalled done; do
		for _s in stuck-lunbridge stuck-fileio; do
			signalled "$_s" && [ ! -e "/tmp/$_s" ] || continue
			: > "/tmp/$_s"
			echo "conformance: $_s: the guest's blocked tasks and LIO devices"
			echo w > /proc/sysrq-trigger
			sleep 1
			# Without the suite's thousands of out-of-range notes.
			dmesg | grep -v 'exceeds last lba' | tail -n 150
			for _i in "$CFG"/core/*/*/info; do echo "$_i: $(cat "$_i")"; done
		done
		sleep 0.5
	done
}
dump_when_stuck &
d=$(fileio_create ref /tmp/ref.img "$SIZE")
iscsi_export "$FILEIO_IQN" "$d"
signal exported
waitfor done 3000
lb_stop
iscsi_unexport "$FILEIO_IQN"
fileio_remove ref
target_leftovers
