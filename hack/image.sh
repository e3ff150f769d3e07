#!/usr/bin/env bash
# Builds the container image from a static linux/amd64 kubectl-sitefail and kubectl built
# from source (hack/build-tools.sh kubectl), with the image builder of test/tools/image:
# no Docker daemon, no base image pulled. Writes dist/image.tar and the same OCI layout
# unpacked in dist/image (crane push dist/image REF keeps its digest).
#   [IMAGE_REF=ghcr.io/sitefail/kubectl-sitefail:v1.2.3] [IMAGE_OUT=dist] hack/image.sh PLUGIN_BINARY
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
plugin=${1:?usage: hack/image.sh PLUGIN_BINARY}
repo=ghcr.io/sitefail/kubectl-sitefail
# The plugin says its own version; the image is tagged alike, without the platform.
version=$("$plugin" version | cut -d' ' -f2)
ref=${IMAGE_REF:-$repo:$version}
out=${IMAGE_OUT:-dist}
# Under make test the tools are built already: build-tools.sh would relink the shared bin
# directory while the end-to-end shards start binaries from it.
tools=${SITEFAIL_TOOLS_BIN:-$(hack/build-tools.sh image)}
kubectl=${SITEFAIL_TOOLS_BIN:-$(hack/build-tools.sh kubectl)}/kubectl
"$tools/sitefail-image" build -plugin "$plugin" -kubectl "$kubectl" -o "$out/image.tar" -layout "$out/image" \
	-ref "$ref" -version "$version" -revision "$(git rev-parse HEAD)" \
	-source https://github.com/sitefail/kubectl-sitefail -epoch "$(git log -1 --format=%ct)"
echo "wrote $out/image.tar ($ref)" >&2
