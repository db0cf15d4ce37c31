#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run.sh: build lunbridge and run it, on a Linux host whose kernel has LIO
# (target_core_user, tcm_loop, iscsi_target_mod: Debian's stock kernel has
# them as modules). Needs root. Arguments go to lunbridge, e.g.
#
#   sudo bash scripts/run.sh export --size 10G /srv/disk.img
#   sudo bash scripts/run.sh export --fabric iscsi --initiator iqn.1993-08.org.debian:01:host1 \
#       --size 10G /srv/disk.img
#
# The binary is installed as /usr/local/bin/lunbridge.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
if ! command -v go >/dev/null; then
	echo "run.sh: lunbridge needs Go $(sed -n 's/^go //p' go.mod) or newer (/usr/local/go/bin/go)" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "run.sh: lunbridge needs root (configfs, /dev/uio*, FUSE); try: sudo bash $0 $*" >&2
	exit 1
fi
CGO_ENABLED=0 go build -trimpath -o /usr/local/bin/lunbridge .
exec /usr/local/bin/lunbridge "$@"
