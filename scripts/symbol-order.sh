#!/usr/bin/env bash
# Rewrites the release sidecar's code layout: Sources/sidecar/symbol-order.txt, the functions the
# link lays out first (Package.swift, `--symbol-ordering-file`), and Sources/sidecar/symbol-order.ld,
# the code that ran in sections no unique symbol names (`-T`, placed just before them): what ran,
# under callgrind, in bench/memory-load.sh (static pair: startup, idle, wrk through mTLS),
# bench/propagation.sh (dynamic sidecars: bootstrap, watch, changes) and bench/instructions.sh's
# HTTP/2 and gateway paths, in that order. Code a sidecar runs then
# shares pages with little else, so fewer pages are resident (bench/README.md "Idle memory").
# The sidecar is linked once more here with a link map (-Map), which names the input section of
# every address. Run it after changes that move startup or request-path code, then rebuild
# (`rm .build-release/release/sidecar; scripts/build-release.sh --product sidecar`): a stale
# layout only costs memory.
#
#   scripts/symbol-order.sh                 # builds sidecar (with the map) and control-plane first
#   SKIP_BUILD=1 MAP=FILE scripts/symbol-order.sh   # FILE: the link map of $RELEASE/sidecar
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RELEASE=${RELEASE:-$ROOT/.build-release/release}   # or another build of both products
command -v valgrind > /dev/null || { echo "scripts/symbol-order.sh: needs valgrind (scripts/install-deps.sh)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[[ -n "${KEEP:-}" ]] && trap 'cp -r "$WORK" "$KEEP"; rm -rf "$WORK"' EXIT
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    MAP=$WORK/sidecar.map
    (cd "$ROOT" && flock /tmp/mesh-build.lock ./scripts/build-release.sh --product sidecar -Xlinker "-Map=$MAP" 2>&1 | tail -1) >&2
    (cd "$ROOT" && flock /tmp/mesh-build.lock ./scripts/build-release.sh --product control-plane 2>&1 | tail -1) >&2
fi
[[ -s "${MAP:-}" ]] || { echo "scripts/symbol-order.sh: no link map of $RELEASE/sidecar (MAP=FILE with SKIP_BUILD=1)" >&2; exit 1; }
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
# Then the request paths the pair above does not run: HTTP/2 (h2c → mTLS h2 → h2c) and the
# gateway (HTTPS edge → mTLS), as bench/instructions.sh drives them (steady state only).
for protocol in h2 gateway; do
    PROTOCOL=$protocol BIN=$RELEASE/sidecar DUMP_INSTR=yes KEEP_DUMPS=$WORK/$protocol "$ROOT/bench/instructions.sh" --measure \
        > "$WORK/$protocol.log" 2>&1 || { cat "$WORK/$protocol.log" >&2; exit 1; }
done
python3 "$ROOT/scripts/symbol-order.py" "$WORK/sidecar.stripped" "$MAP" "${ORDER:-$ROOT/Sources/sidecar/symbol-order.txt}" \
    "${SCRIPT:-$ROOT/Sources/sidecar/symbol-order.ld}" "$WORK/static" "$WORK/dynamic" "$WORK/h2" "$WORK/gateway"
