#!/bin/sh
# Runs one mesh-fuzz target (build it first: fuzz/build.sh mesh), niced, one job:
#
#   fuzz/run.sh TARGET [SECONDS | -runs=N] [more libFuzzer flags]
#       fuzzes with fuzz/dict/TARGET.dict; new inputs go to fuzz/work/TARGET, crashes to
#       fuzz/work/TARGET-crash-*; the committed corpus fuzz/corpus/TARGET and the seeds of
#       fuzz/seeds/make_seeds.py (fuzz/seeds/TARGET) are read, not written.
#   fuzz/run.sh merge TARGET
#       minimizes fuzz/corpus/TARGET + fuzz/work/TARGET + fuzz/seeds/TARGET into a new
#       fuzz/corpus/TARGET (libFuzzer -merge=1: a small set with the same edge coverage);
#       inputs named regression-* (those of fixed bugs) are always kept.
#   fuzz/run.sh replay TARGET FILE…
#       runs inputs once (e.g. a crash) and prints what failed.
#
# TARGET: config, api-json, apply-yaml, snapshot, csr, chunked (Sources/MeshFuzzTargets).
set -e
cd "$(dirname "$0")/.."
BIN=fuzz/mesh-fuzz
# Let libFuzzer, not the Swift backtracer, handle a trap: it saves the input.
export SWIFT_BACKTRACE=enable=no
[ -x "$BIN" ] || { echo "no $BIN: run fuzz/build.sh mesh (under the build lock)" >&2; exit 1; }

max_len() {
    case "$1" in
        chunked) echo 512 ;;
        api-json|csr) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

case "$1" in
merge)
    T=$2
    rm -rf "fuzz/work/$T.merged" && mkdir -p "fuzz/work/$T.merged" "fuzz/work/$T" "fuzz/corpus/$T"
    set -- "fuzz/corpus/$T" "fuzz/work/$T"
    [ -d "fuzz/seeds/$T" ] && set -- "$@" "fuzz/seeds/$T"
    # Edges only (no hit counters, no comparison operands) keeps the parser corpora to a few
    # hundred inputs; the small chunked machine keeps its full feature set (a few hundred too).
    features="-use_counters=0 -use_cmp=0"; [ "$T" = chunked ] && features=
    MESH_FUZZ_TARGET=$T nice -n 19 "$BIN" -merge=1 $features -max_len="$(max_len "$T")" \
        "fuzz/work/$T.merged" "$@"
    # Inputs of fixed bugs (regression-*) stay whatever the merge thinks of their coverage.
    for kept in "fuzz/corpus/$T"/regression-*; do [ -e "$kept" ] && cp "$kept" "fuzz/work/$T.merged/"; done
    rm -rf "fuzz/corpus/$T" && mv "fuzz/work/$T.merged" "fuzz/corpus/$T"
    echo "fuzz/corpus/$T: $(ls "fuzz/corpus/$T" | wc -l) inputs, $(cat "fuzz/corpus/$T"/* | wc -c) bytes"
    ;;
replay)
    T=$2; shift 2
    MESH_FUZZ_TARGET=$T "$BIN" "$@"
    ;;
*)
    T=$1; shift
    [ -n "$T" ] || { sed -n '2,16p' "$0" >&2; exit 2; }
    case "$1" in
        -runs=*) budget=$1; shift ;;
        ''|-*) budget=-max_total_time=300 ;;
        *) budget=-max_total_time=$1; shift ;;
    esac
    mkdir -p "fuzz/work/$T" "fuzz/corpus/$T"
    seeds=; [ -d "fuzz/seeds/$T" ] && seeds="fuzz/seeds/$T"
    MESH_FUZZ_TARGET=$T exec nice -n 19 "$BIN" "$budget" -dict="fuzz/dict/$T.dict" -max_len="$(max_len "$T")" \
        -timeout=20 -print_final_stats=1 -artifact_prefix="fuzz/work/$T-" "$@" "fuzz/work/$T" "fuzz/corpus/$T" $seeds
    ;;
esac
