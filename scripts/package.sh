#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
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
#   /usr/share/doc/lunbridge/copyright            DEP-5: lunbridge's license and
#                                                 that of every Go module in the
#                                                 binary, generated from its
#                                                 build info (internal/cmd/
#                                                 debcopyright); fails on a module
#                                                 with an unknown license
#   /usr/share/doc/lunbridge/changelog.gz         one entry: VERSION and commit
#   /usr/share/lintian/overrides/lunbridge        packaging/lintian-overrides
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
	"$root/usr/share/doc/lunbridge/examples" "$root/usr/share/dbus-1/system.d" \
	"$root/usr/share/lintian/overrides" "$root/DEBIAN"
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
install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/lunbridge"

# The copyright file lists what the binary itself says it contains (its
# build info, as "go version -m" prints it), so it cannot drift from
# go.mod; the module cache holds every module's license file after the
# build above.
maintainer=$(sed -n 's/^Maintainer: //p' packaging/control)
first=$(git log --max-parents=0 --format=%cd --date=format:%Y 2>/dev/null | sort | sed -n 1p || true)
last=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
years=${first:-$last}
[ "$years" = "$last" ] || years=$years-$last
go run ./internal/cmd/debcopyright -binary "$root/usr/sbin/lunbridge" -installed /usr/sbin/lunbridge \
	-license LICENSE -modcache "$(go env GOMODCACHE)" -goroot "$(go env GOROOT)" \
	-name lunbridge -contact "$maintainer" -source https://github.com/lunbridge/lunbridge \
	-copyright "$years lunbridge developers" > "$tmp/copyright"
install -m 0644 "$tmp/copyright" "$root/usr/share/doc/lunbridge/copyright"
# A native package's changelog (Debian policy 12.7): one entry for this
# build, dated by the commit so that two builds stay identical.
{
	echo "lunbridge ($version) unstable; urgency=medium"
	echo
	echo "  * Built by scripts/package.sh from commit $commit."
	echo
	echo " -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$root/usr/share/doc/lunbridge/changelog.gz"
chmod 0644 "$root/usr/share/doc/lunbridge/changelog.gz"

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
