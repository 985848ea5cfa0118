#!/usr/bin/env bash
# The test command: installs what is missing, runs every unit and integration test, then the
# hot path's regression guard on the debug build just made (instructions per request under
# callgrind against bench/instructions-baseline.txt; alone, so the suites do not disturb it).
# With arguments (e.g. --filter X) only those tests run, without the guard.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# Warnings are errors in every target of ours (Package.swift), so a warning fails the build.
swift build --build-tests
swift test --skip-build --parallel "$@"
if [[ $# -eq 0 ]]; then
    bench/instructions.sh
fi
