#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# build-peer.sh SRC [OUT]: build tcmu-runner's file handler, the peer TCMU
# handler that scripts/bench.sh runs beside lunbridge
# (LUNBRIDGE_BENCH_PEER=OUT), from a tcmu-runner source tree SRC (tested
# with tag v1.6.2, commit 7b9e500, of github.com/open-iscsi/tcmu-runner).
# OUT (default ./peer-build) is an empty or earlier build directory outside
# the source; it ends up holding tcmu-runner, handler_file.so and
# libtcmu.so.2, which is what the benchmark copies into the guest.
#
# Only the file handler is built: no Gluster, RBD, qcow, ZBC or tape
# handlers, no tcmalloc, no systemd, so that the peer needs only the build
# packages below. Those are installed here with apt-get when missing, not by
# install-deps.sh: CI and scripts/test.sh never build the peer, and neither
# the source nor the build belongs in the repository.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 TCMU_RUNNER_SOURCE [OUT]" >&2
	exit 2
fi
src=$(realpath "$1")
out=${2:-peer-build}
if [ ! -f "$src/CMakeLists.txt" ] || [ ! -f "$src/file_example.c" ]; then
	echo "$0: $src does not look like a tcmu-runner source tree (no CMakeLists.txt or file_example.c)" >&2
	exit 1
fi

# The build needs cmake, libnl (netlink to the kernel's TCMU genl family),
# glib (its D-Bus service) and libkmod (it loads target_core_user).
pkgs=(cmake make gcc pkg-config libnl-3-dev libnl-genl-3-dev libglib2.0-dev libkmod-dev)
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

out=$(realpath -m "$out")
case "$out/" in
"$src"/*)
	echo "$0: build directory $out is inside the source tree; use one outside it" >&2
	exit 1
	;;
esac
mkdir -p "$out"
cd "$out"
# RelWithDebInfo: optimised like a packaged build, with symbols for perf.
cmake "$src" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-Dwith-glfs=false -Dwith-qcow=false -Dwith-rbd=false -Dwith-zbc=false \
	-Dwith-fbo=false -Dwith-tcmalloc=false -DSUPPORT_SYSTEMD=OFF >cmake.log
make -j"$(nproc)" tcmu-runner handler_file >make.log
for f in tcmu-runner handler_file.so libtcmu.so.2; do
	if [ ! -e "$f" ]; then
		echo "$0: the build did not produce $out/$f (see $out/make.log)" >&2
		exit 1
	fi
done
echo "$out"
