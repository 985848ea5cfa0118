#!/usr/bin/env bash
# The test command: installs what is missing, runs every unit and integration test (the
# load-measuring suites last, on their own), then the hot path's regression guard on the debug
# build just made (instructions per request under callgrind against
# bench/instructions-baseline.txt; alone, so the suites do not disturb it).
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
# connection to 7 requests/s and a hundred parallel curl requests over 3 s.
alone='(LimitsAtScaleTests|ZeroLossDrillTests|EtcdWatchLivenessTests|GatewayAggregateTests|GatewayCacheTests)/'
swift test --skip-build --parallel --skip "$alone"
swift test --skip-build --parallel --filter "$alone"
bench/instructions.sh
