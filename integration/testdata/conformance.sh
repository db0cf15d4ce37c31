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
d=$(fileio_create ref /tmp/ref.img "$SIZE")
iscsi_export "$FILEIO_IQN" "$d"
signal exported
waitfor done 3000
lb_stop
iscsi_unexport "$FILEIO_IQN"
fileio_remove ref
target_leftovers
