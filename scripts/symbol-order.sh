#!/usr/bin/env bash
# Rewrites Sources/sidecar/symbol-order.txt, the list of functions the release sidecar's link
# lays out first (Package.swift, `--symbol-ordering-file`): those that ran, under callgrind, in
# bench/memory-load.sh (static pair: startup, idle, wrk through mTLS) and bench/propagation.sh
# (dynamic sidecars: bootstrap, watch, changes). Code a sidecar runs then shares pages with
# little else, so fewer pages are resident (bench/README.md "Idle memory"). Run it after changes
# that move startup or request-path code, then rebuild: a stale list only costs memory.
#
#   scripts/symbol-order.sh                 # builds sidecar and control-plane (release) first
#   SKIP_BUILD=1 scripts/symbol-order.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RELEASE=${RELEASE:-$ROOT/.build-release/release}   # or another build of both products
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    for product in sidecar control-plane; do
        (cd "$ROOT" && flock /tmp/mesh-build.lock ./scripts/build-release.sh --product "$product" 2>&1 | tail -1) >&2
    done
fi
command -v valgrind > /dev/null || { echo "scripts/symbol-order.sh: needs valgrind (scripts/install-deps.sh)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[[ -n "${KEEP:-}" ]] && trap 'cp -r "$WORK" "$KEEP"; rm -rf "$WORK"' EXIT
# valgrind 3.19 needs the binary without Swift 6.3's debug info; a wrapper named `sidecar` runs it
# under callgrind, so the benchmarks run unchanged (BIN=$WORK).
objcopy --strip-debug "$RELEASE/sidecar" "$WORK/sidecar.stripped"
ln -s "$RELEASE/control-plane" "$WORK/control-plane"
cat > "$WORK/sidecar" <<WRAPPER
#!/bin/sh
exec valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$WORK/\$PHASE/callgrind.%p" "$WORK/sidecar.stripped" "\$@"
WRAPPER
chmod +x "$WORK/sidecar"
mkdir "$WORK/static" "$WORK/dynamic"
# What every sidecar runs first (static pair), then what a dynamic sidecar adds.
PHASE=static BIN=$WORK IDLE_S=1 LOAD_S=3 CONNS=16 "$ROOT/bench/memory-load.sh" > "$WORK/memory-load.log" 2>&1 \
    || { cat "$WORK/memory-load.log" >&2; exit 1; }
PHASE=static BIN=$WORK IDLE_S=1 "$ROOT/bench/memory.sh" > "$WORK/memory.log" 2>&1 || { cat "$WORK/memory.log" >&2; exit 1; }
PHASE=dynamic BIN=$WORK SKIP_BUILD=1 N=2 CHANGES=3 OUT=$WORK/propagation "$ROOT/bench/propagation.sh" > "$WORK/propagation.log" 2>&1 \
    || { cat "$WORK/propagation.log" >&2; exit 1; }
python3 "$ROOT/scripts/symbol-order.py" "$WORK/sidecar.stripped" "${ORDER:-$ROOT/Sources/sidecar/symbol-order.txt}" "$WORK/static" "$WORK/dynamic"
