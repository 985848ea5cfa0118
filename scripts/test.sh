#!/usr/bin/env bash
# The test command: installs what is missing, then runs every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# Warnings are errors in every target of ours but SidecarCore (Package.swift). Until it joins,
# a warning in its sources outside Proxy/ and Upstream/ (where the data-plane restructuring
# removes the last three) fails the run here. CI builds from a clean clone, so every file is
# compiled and every warning shown.
log=$(mktemp "${TMPDIR:-/tmp}/mesh-build.XXXXXX")
trap 'rm -f "$log"' EXIT
swift build --build-tests 2>&1 | tee "$log"
if grep -E "^$PWD/Sources/SidecarCore/.*: warning: " "$log" | grep -vE "/Sources/SidecarCore/(Proxy|Upstream)/"; then
    echo "test.sh: SidecarCore has new warnings (above); fix them" >&2
    exit 1
fi
swift test --skip-build --parallel "$@"
