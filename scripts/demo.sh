#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# demo.sh: run lunbridge's main job on a machine whose kernel lacks LIO.
#
# Why two demo.sh: this one is the host's entry point (installs the
# dependencies and runs TestDemo); integration/testdata/demo.sh is the
# guest half that TestDemo embeds and runs inside the VM.
#
# It installs the test VM's packages (scripts/install-deps.sh), boots
# Debian's stock kernel under qemu (integration/vmtest; no KVM needed),
# and in the guest runs
#
#   lunbridge export --size 256M --name demo /tmp/demo.img
#
# then shows the disk it became (/dev/sdX, sg_inq, sg_readcap), writes and
# reads it with dd and fio, checks the bytes in the backing file, and prints
# the LUN's stats and latency from the FUSE view and `lunbridge stats`.
# The guest console streams to this terminal. Takes about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
LUNBRIDGE_INTEGRATION=1 LUNBRIDGE_DEMO=1 exec go test -count=1 -timeout 30m -v -run '^TestDemo$' ./integration/
