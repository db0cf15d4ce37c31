#!/usr/bin/env bash
# package.sh: build the Debian package of lunbridge with dpkg-deb, in one
# command:
#
#   bash scripts/package.sh [OUTDIR]     (default OUTDIR: dist)
#
# prints the path of OUTDIR/lunbridge_VERSION_ARCH.deb. VERSION defaults to
# 0.0~git<commit> (set VERSION= to override; it must start with a digit),
# ARCH to dpkg's (amd64, arm64; set ARCH= to cross-build). The package holds:
#   /usr/sbin/lunbridge                           static (CGO_ENABLED=0)
#   /lib/systemd/system/lunbridge.service         examples/lunbridge.service,
#                                                 with ExecStart at /usr/sbin
#   /usr/share/man/man8/lunbridge.8.gz            "lunbridge man"
#   /usr/share/bash-completion/completions/lunbridge  "lunbridge completion bash"
#   /usr/share/fish/vendor_completions.d/lunbridge.fish
#   /usr/share/doc/lunbridge/examples/            lunbridge.toml, prometheus.yml,
#                                                 alerts.yml
#   /usr/share/dbus-1/system.d/org.kernel.TCMUService1.conf
#                                                 the D-Bus policy (root only owns
#                                                 and calls the targetcli handler
#                                                 name)
# No maintainer scripts: the unit is not enabled or started on install (it
# needs /etc/lunbridge/lunbridge.toml first). Timestamps come from the
# commit (SOURCE_DATE_EPOCH), so two builds of one commit are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

out=${1:-dist}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
version=${VERSION:-0.0~git$commit}
case $version in
[0-9]*) ;;
*) echo "package.sh: VERSION $version must start with a digit (Debian policy 5.6.12)" >&2; exit 2 ;;
esac
arch=${ARCH:-$(dpkg --print-architecture)}
case $arch in
amd64 | arm64 | riscv64 | ppc64el | s390x) goarch=${arch/ppc64el/ppc64le} ;;
i386) goarch=386 ;;
armhf) goarch=arm ;;
*) echo "package.sh: no Go port for Debian architecture $arch" >&2; exit 2 ;;
esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
ldflags="-s -w -X main.version=$version"
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -ldflags "$ldflags" -o "$root/usr/sbin/lunbridge" .
# The man page and completions come from the binary's own CLI definition;
# build one for this machine when cross-building.
gen=$root/usr/sbin/lunbridge
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
	gen=$tmp/lunbridge-host
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$gen" .
fi

install -d "$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" \
	"$root/usr/share/fish/vendor_completions.d" "$root/lib/systemd/system" \
	"$root/usr/share/doc/lunbridge/examples" "$root/usr/share/dbus-1/system.d" "$root/DEBIAN"
"$gen" man | gzip -9n > "$root/usr/share/man/man8/lunbridge.8.gz"
"$gen" completion bash > "$root/usr/share/bash-completion/completions/lunbridge"
"$gen" completion fish > "$root/usr/share/fish/vendor_completions.d/lunbridge.fish"
# The unit is examples/lunbridge.service; only the binary's path changes
# (Debian packages never install into /usr/local).
sed 's|/usr/local/bin/lunbridge|/usr/sbin/lunbridge|g' examples/lunbridge.service > "$root/lib/systemd/system/lunbridge.service"
if ! grep -q '^ExecStart=/usr/sbin/lunbridge ' "$root/lib/systemd/system/lunbridge.service"; then
	echo "package.sh: examples/lunbridge.service: no ExecStart=/usr/local/bin/lunbridge to point at /usr/sbin" >&2
	exit 1
fi
install -m 0644 examples/lunbridge.toml examples/prometheus.yml examples/alerts.yml \
	"$root/usr/share/doc/lunbridge/examples/"
install -m 0644 packaging/dbus-org.kernel.TCMUService1.conf \
	"$root/usr/share/dbus-1/system.d/org.kernel.TCMUService1.conf"
chmod 0644 "$root"/usr/share/bash-completion/completions/lunbridge \
	"$root"/usr/share/fish/vendor_completions.d/lunbridge.fish "$root"/lib/systemd/system/lunbridge.service

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/control > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum) > "$tmp/md5sums"
mv "$tmp/md5sums" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb="$out/lunbridge_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
