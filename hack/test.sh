#!/usr/bin/env bash
# make test: lint and the unit tests while the test cluster's binaries build (only the
# first run on a machine builds them: downloads and links overlap the unit tests'
# compiling), then the end-to-end suite (hack/e2e.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
hack/build-tools.sh all >"$log" 2>&1 &
tools=$!
status=0
make --no-print-directory lint unit || status=$?
if ! wait "$tools"; then
	echo "test: building the test cluster's tools failed:" >&2
	cat "$log" >&2
	exit 1
fi
[ "$status" = 0 ] || exit "$status"
hack/e2e.sh
