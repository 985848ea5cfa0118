#!/usr/bin/env bash
# Transparent interception's cost on the sidecar pair path: the same two sidecars, the same
# load, reached two ways, interleaved round by round:
#
#   explicit:     wrk → 127.0.0.1:15001 (Host: payments)             → sidecar A ══mTLS══▶ sidecar B → nginx
#   intercepted:  wrk → 10.78.0.2:8080 ─nft redirect─▶ 127.0.0.1:15001 (SO_ORIGINAL_DST → payments) → …
#
# Two network namespaces joined by a veth pair (A 10.78.0.1: wrk and sidecar A, with
# `sidecar iptables --apply`; B 10.78.0.2: sidecar B and an nginx app on 127.0.0.1:8080, 200 + 100 B).
# wrk runs as nobody (the rules exempt only the sidecars' user, root here). Per mode and round:
# requests/s at saturation (wrk, keep-alive) and CPU-seconds of both sidecars per 100k requests
# (/proc/PID/stat); prints medians and the ratio intercepted/explicit. Needs root (ip netns, nft).
#
#   bench/intercept.sh                          # build (release), 3 rounds of 10 s
#   ROUNDS=5 SAT_SECONDS=10 SKIP_BUILD=1 bench/intercept.sh
#   CLOSE=1 bench/intercept.sh                  # a new connection per request: the redirect and lookup each time
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SAT_SECONDS=${SAT_SECONDS:-10}
SAT_CONNECTIONS=${SAT_CONNECTIONS:-32}
CLOSE=${CLOSE:-0}          # 1: every request on a new connection (the redirect and lookup per connection)
BIN=${BIN:-$ROOT/.build-release/release}
OUT=${OUT:-$ROOT/bench/out/intercept-$(date -u +%Y%m%dT%H%M%S)}
HZ=$(getconf CLK_TCK)
NS=mbench-$$
A=$NS-a B=$NS-b

need() { command -v "$1" >/dev/null || { echo "bench/intercept.sh: needs $1 ($2)" >&2; exit 1; }; }
need wrk "apt-get install wrk"; need nginx "apt-get install nginx"; need nft "apt-get install nftables"
need openssl "apt-get install openssl"; need setpriv "apt-get install util-linux"; need ip "apt-get install iproute2"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "building sidecar (release)…" >&2
    (cd "$ROOT" && nice -n 15 ./scripts/build-release.sh --product sidecar 2>&1 | tail -3) >&2
fi
mkdir -p "$OUT/pki"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns delete "$A" 2>/dev/null || true
    ip netns delete "$B" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
# Background processes start with `ip netns exec` itself (it execs the command: $! is its PID).
in_a() { ip netns exec "$A" "$@"; }
in_b() { ip netns exec "$B" "$@"; }
cpu_of() { awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
wait_ready() {  # namespace-runner admin-port
    for _ in $(seq 1 300); do "$1" curl -sf -o /dev/null "http://127.0.0.1:$2/ready" && return 0; sleep 0.05; done
    echo "a sidecar did not become ready (see $OUT/*.log)" >&2; exit 1
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- two hosts on a veth pair ---
ip netns add "$A"; ip netns add "$B"
ip link add eth0 netns "$A" type veth peer name eth0 netns "$B"
in_a ip addr add 10.78.0.1/24 dev eth0; in_b ip addr add 10.78.0.2/24 dev eth0
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
# TIME_WAIT reuse for every destination, not only loopback (the default, 2): with CLOSE=1 the
# intercepted mode's connections go to 10.78.0.2 and would otherwise run out of ports first.
in_a sysctl -qw net.ipv4.tcp_tw_reuse=1

# --- certificates: P-256, SPIFFE URI SAN (as bench/sidecar.sh) ---
PKI=$OUT/pki
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=mesh bench root" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
for service in web payments; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$service" \
        -keyout "$PKI/$service.key" -out "$PKI/$service.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://mesh.local/service/%s\n' "$service" > "$PKI/$service.ext"
    openssl x509 -req -in "$PKI/$service.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 1 \
        -extfile "$PKI/$service.ext" -out "$PKI/$service.pem" 2>/dev/null
done

# --- B: nginx app (one worker) and payments' sidecar ---
BODY=$(printf 'x%.0s' $(seq 1 99))
cat > "$OUT/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/nginx.pid; error_log $OUT/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
       server { listen 127.0.0.1:8080; location / { default_type text/plain; return 200 "$BODY\n"; } } }
EOF
ip netns exec "$B" nginx -p "$OUT" -c "$OUT/nginx.conf" > "$OUT/nginx.log" 2>&1 & PIDS+=($!)
cat > "$OUT/payments.yaml" <<EOF
service: payments
inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }
outbound: { listen: 127.0.0.1:15001 }
admin:    { listen: 127.0.0.1:15000 }
tls:      { cert: $PKI/payments.pem, key: $PKI/payments.key, trustBundle: $PKI/ca.pem }
EOF
cat > "$OUT/web.yaml" <<EOF
service: web
inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }
outbound: { listen: 127.0.0.1:15001, transparent: true }
admin:    { listen: 127.0.0.1:15000 }
tls:      { cert: $PKI/web.pem, key: $PKI/web.key, trustBundle: $PKI/ca.pem }
resources:
  - { kind: Instance, service: payments, address: 10.78.0.2, port: 15006 }
EOF
ip netns exec "$B" "$BIN/sidecar" --config "$OUT/payments.yaml" --workers 1 --access-log off > "$OUT/payments.log" 2>&1 & B_PID=$!; PIDS+=("$B_PID")
ip netns exec "$A" "$BIN/sidecar" --config "$OUT/web.yaml" --workers 1 --access-log off > "$OUT/web.log" 2>&1 & A_PID=$!; PIDS+=("$A_PID")
wait_ready in_b 15000; wait_ready in_a 15000
in_a "$BIN/sidecar" iptables --apply --proxy-uid "$(id -u)"

as_nobody() { in_a setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
check() {  # mode url host-header…: one request must be answered 200 by the app through both sidecars
    local code; code=$(as_nobody curl -s -o /dev/null -w '%{http_code}' "${@:3}" "$2")
    [[ "$code" == 200 ]] || { echo "bench/intercept.sh: $1 answered $code" >&2; exit 1; }
}
check explicit http://127.0.0.1:15001/pay -H 'Host: payments'
check intercepted http://10.78.0.2:8080/pay
before=$(in_a curl -s http://127.0.0.1:15000/metrics | awk '/^sidecar_intercepted_connections_total\{outcome="mesh-http"\}/ { print $2 }')
[[ "${before:-0}" -ge 1 ]] || { echo "bench/intercept.sh: the intercepted request was not intercepted" >&2; exit 1; }

run() {  # mode round
    local mode=$1 round=$2 url args=() cpu0 cpu1 out requests rps
    if [[ $mode == explicit ]]; then url=http://127.0.0.1:15001/pay; args=(-H 'Host: payments'); else url=http://10.78.0.2:8080/pay; fi
    [[ $CLOSE == 1 ]] && args+=(-H 'connection: close')
    cpu0=$(python3 -c "print($(cpu_of "$A_PID") + $(cpu_of "$B_PID"))")
    out=$(as_nobody wrk -t1 -c"$SAT_CONNECTIONS" -d"${SAT_SECONDS}s" "${args[@]}" "$url")
    cpu1=$(python3 -c "print($(cpu_of "$A_PID") + $(cpu_of "$B_PID"))")
    requests=$(awk '/requests in/ { print $1 }' <<< "$out")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<< "$out")
    if grep -q 'Non-2xx\|Socket errors' <<< "$out"; then echo "$mode round $round: $(grep 'Non-2xx\|Socket errors' <<< "$out")" >&2; fi
    printf '%s\t%s\t%s\t%s\n' "$mode" "$round" "$rps" "$(python3 -c "print(f'{($cpu1 - $cpu0) / $requests * 100000:.3f}')")" \
        | tee -a "$OUT/results.tsv" >&2
}
printf 'mode\tround\treq/s\tCPU-s/100k (both sidecars)\n' >&2
for round in $(seq 1 "$ROUNDS"); do
    if (( round % 2 )); then run explicit "$round"; run intercepted "$round"; else run intercepted "$round"; run explicit "$round"; fi
done

rps_e=$(awk '$1 == "explicit" { print $3 }' "$OUT/results.tsv" | median)
rps_i=$(awk '$1 == "intercepted" { print $3 }' "$OUT/results.tsv" | median)
cpu_e=$(awk '$1 == "explicit" { print $4 }' "$OUT/results.tsv" | median)
cpu_i=$(awk '$1 == "intercepted" { print $4 }' "$OUT/results.tsv" | median)
echo
printf 'medians of %s rounds, %s s each, %s connections%s\n' "$ROUNDS" "$SAT_SECONDS" "$SAT_CONNECTIONS" "$([[ $CLOSE == 1 ]] && echo ', a new connection per request')"
printf '%-12s %10s %12s\n' mode req/s CPU-s/100k
printf '%-12s %10.0f %12.3f\n' explicit "$rps_e" "$cpu_e" intercepted "$rps_i" "$cpu_i"
printf 'intercepted/explicit: throughput %.3f, CPU per request %.3f\n' \
    "$(python3 -c "print($rps_i / $rps_e)")" "$(python3 -c "print($cpu_i / $cpu_e)")"
echo "(raw rows: $OUT/results.tsv)"
