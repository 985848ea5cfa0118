#!/usr/bin/env bash
# The test command: installs what is missing, runs every unit and integration test (the
# load-measuring and propagation-timing suites last, each group on its own), then the hot
# path's regression guard on the debug build just made (instructions per request under
# callgrind against bench/instructions-baseline.txt; alone, so the suites do not disturb it).
# With arguments (e.g. --filter X) only those tests run, without the guard.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# Warnings are errors in every target of ours (Package.swift), so a warning fails the build.
swift build --build-tests
if [[ $# -gt 0 ]]; then
    exec swift test --skip-build --parallel "$@"
fi
# Suites that measure rates, deadlines or request coalescing under load they make themselves
# (1100 connections, 3 s of rate-limited traffic, a rolling restart under load) run after the
# others, among themselves: beside the whole parallel suite a 2-core machine slowed one
# connection to 7 requests/s and a hundred parallel curl requests over 3 s. Then the suites
# that time a change's propagation to a watcher (within 1 s), without that load beside them
# either: beside the parallel suite one took 1.14 s.
load='(LimitsAtScaleTests|ZeroLossDrillTests|EtcdWatchLivenessTests|GatewayAggregateTests|GatewayCacheTests)/'
timed='(EtcdReplicaTests|ControlPlaneSidecarFlowTests)/'
swift test --skip-build --parallel --skip "$load|$timed"
swift test --skip-build --parallel --filter "$load"
swift test --skip-build --parallel --filter "$timed"
bench/instructions.sh
