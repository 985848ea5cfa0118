#!/usr/bin/env bash
# The test command: installs what is missing, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# Warnings are errors in every target of ours (Package.swift), so a warning fails the build.
swift build --build-tests
swift test --skip-build --parallel "$@"
