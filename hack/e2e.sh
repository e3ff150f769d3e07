#!/usr/bin/env bash
# Runs the end-to-end suite in shards, each against a stretched cluster of its own, side
# by side: most of an e2e test is waiting (boots, waves, a dead site's grace period),
# and one shared cluster cannot run two moves at once (the move lock). The small test
# packages run beside them. Each shard's log is kept in $SITEFAIL_E2E_LOGS (or a temp
# directory) and shown when it fails.
#   SITEFAIL_E2E_RUN=REGEX hack/e2e.sh   runs only the matching tests, in one shard.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools=$(hack/build-tools.sh all)
logs=${SITEFAIL_E2E_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/e2e.test" ./test/e2e

# The shards, balanced by the durations a full run measured side by side (six shards
# held 476, 370, 209, 358, 210 and 518 s of tests, 648 s in all); the last one takes
# every test the others do not name.
shards=(
	'^(TestCrashAtEveryPointFinishesOnce|TestLifecycleN20.*|TestKubeVirtDataVolumeTemplates|TestIncidentTargetHandlersCrashed)$'
	'^(TestMoveSurvivesControlPlaneRestarts|TestMoveThroughAFaultyAPIServer|TestSafety(SiteComesBackMidFailover|RerunWhileRestartsBoot))$'
	'^(TestKubeVirtBehaviour|TestSafety(ManualInterruptedBetweenReleaseAndStart|LockTakenOverMidMove)|TestIncident(SiteBackAfterPowerLoss|SourceSiteDiesMidMigration)|TestConcurrentEditIsKept)$'
	'^(TestFailoverProvenByFenceAgents|TestFenceNetworkFailoverAndFailback|TestMoveRecordsHistoryAndReport|TestIncidentMigrationTargetNeverRuns|TestWitnessSiteQuorumAndRemediation|TestLifecycleC1.*)$'
	'^(TestLifecycle(H2|C2).*|TestShippedRolesAreEnoughAndNoMore|TestDrillDryRunServerWithTheDrillCheckAccount|TestIncident(VMShuttingDownWhenItsSiteDies|DrainMigrationIsWaitedOut|BootFailureInTier1))$'
)
rest=$(IFS='|'; echo "${shards[*]}")

pids=() names=()
run() { # name cmd...
	local name=$1; shift
	("$@" >"$logs/$name.log" 2>&1) &
	pids+=($!) names+=("$name")
}
e2e() { # name go-test-flags...
	local name=$1; shift
	run "$name" env SITEFAIL_TOOLS_BIN="$tools" SITEFAIL_PLUGIN_BIN="$bin/kubectl-sitefail" \
		bash -c 'cd test/e2e && exec "$0" -test.count=1 -test.timeout=30m -test.v "$@"' "$bin/e2e.test" "$@"
}

go build -o "$bin/kubectl-sitefail" ./cmd/kubectl-sitefail
start=$(date +%s)
if [ -n "${SITEFAIL_E2E_RUN:-}" ]; then
	e2e e2e -test.run "$SITEFAIL_E2E_RUN"
else
	# Every test package but the suite itself (a new one is picked up by itself).
	packages=$(go list ./test/... | grep -v '/test/e2e$')
	# shellcheck disable=SC2086
	run packages env SITEFAIL_TOOLS_BIN="$tools" go test -count=1 -timeout 30m $packages
	for i in "${!shards[@]}"; do
		e2e "e2e-$((i + 1))" -test.run "${shards[$i]}"
	done
	e2e "e2e-$((${#shards[@]} + 1))" -test.skip "$rest"
fi

failed=0
for i in "${!pids[@]}"; do
	if wait "${pids[$i]}"; then
		echo "ok   ${names[$i]} ($(grep -cE '^(--- PASS|ok )' "$logs/${names[$i]}.log" || true) passed)"
	else
		failed=1
		echo "FAIL ${names[$i]}: last lines of $logs/${names[$i]}.log:"
		grep -E '^(--- FAIL|FAIL|panic)' "$logs/${names[$i]}.log" || true
		tail -n 60 "$logs/${names[$i]}.log"
	fi
done
echo "e2e: $(($(date +%s) - start)) s; logs in $logs"
exit $failed
