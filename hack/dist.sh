#!/usr/bin/env bash
# Builds release archives for every platform, their sha256 sums, and the krew manifest
# rendered with those sums.
#   DIST_DIR=dist MANIFEST_OUT=krew/sitefail.yaml VERSION=v1.2.3 hack/dist.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dist=${DIST_DIR:-dist}
manifest=${MANIFEST_OUT:-krew/sitefail.yaml}
platforms=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --exact-match 2>/dev/null || echo "v0.1.0-dev.g$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
fi
case $VERSION in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "VERSION $VERSION is not v-prefixed semver (krew needs one)" >&2; exit 1 ;; esac
base=${RELEASE_URL:-https://github.com/sitefail/kubectl-sitefail/releases/download}
mkdir -p "$dist"
rm -f "$dist"/kubectl-sitefail_*.tar.gz "$dist"/SHA256SUMS
entries=""
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	stage=$(mktemp -d)
	exe=kubectl-sitefail
	[ "$os" = windows ] && exe=kubectl-sitefail.exe
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X github.com/sitefail/kubectl-sitefail/pkg/plugin.Version=$VERSION" \
		-o "$stage/$exe" ./cmd/kubectl-sitefail
	cp LICENSE "$stage/"
	cp hack/kubectl_complete-sitefail "$stage/"
	archive=kubectl-sitefail_${VERSION}_${os}_${arch}.tar.gz
	# Fixed order, owner and times: the same sources give the same archive and sum.
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$stage" -cf - . | gzip -n -9 >"$dist/$archive"
	rm -rf "$stage"
	sum=$(sha256sum "$dist/$archive" | cut -d' ' -f1)
	echo "$sum  $archive" >>"$dist/SHA256SUMS"
	entries+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $base/$VERSION/$archive
    sha256: $sum
    bin: $exe
    files:
    - from: $exe
      to: .
    - from: LICENSE
      to: .
"
	if [ "$os" != windows ]; then
		entries+="    - from: kubectl_complete-sitefail
      to: .
"
	fi
	echo "built $dist/$archive" >&2
done
mkdir -p "$(dirname "$manifest")"
tmpl=$(cat krew/sitefail.yaml.tmpl)
out=${tmpl//'${VERSION}'/$VERSION}
out=${out//'${PLATFORMS}'/${entries%$'\n'}}
printf '%s\n' "$out" >"$manifest"
echo "wrote $manifest" >&2
