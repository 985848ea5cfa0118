#!/usr/bin/env bash
# Memory of a sidecar pair, idle and under load: wrk → web's outbound → mTLS → payments'
# inbound → nginx app (static configs, as bench/sidecar.sh's pair). For each sidecar: VmRSS
# idle (IDLE_S after /ready), then wrk -c CONNS for LOAD_S through the pair, then VmHWM (peak)
# and VmRSS after; the per-mapping split (bench/smaps.py) idle and after load, and threads.
#
#   bench/memory-load.sh                                  # .build-release/release/sidecar
#   BIN=/other/build/release bench/memory-load.sh         # another build
#   WORKERS=2 ACCESS_LOG=off CONNS=64 LOAD_S=10 bench/memory-load.sh
#   ENV="MALLOC_ARENA_MAX=2" bench/memory-load.sh         # environment for both sidecars
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/.build-release/release}
IDLE_S=${IDLE_S:-2}
LOAD_S=${LOAD_S:-10}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
ACCESS_LOG=${ACCESS_LOG:-on}
ENV=${ENV:-}
OUT=$(mktemp -d)
RESULTS=$OUT/results.tsv
HZ=$(getconf CLK_TCK)
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
need wrk "apt-get install wrk"; need nginx "apt-get install nginx"; need ss "apt-get install iproute2"
trap 'cleanup; rm -rf "$OUT"' EXIT INT TERM
PKI=$OUT/pki; mkdir -p "$PKI" "$OUT/app"
mint_pki

APP=$(free_port); A_LISTEN=$(free_port); B=$(free_port); A_ADMIN=$(free_port); B_ADMIN=$(free_port)
cat > "$OUT/app/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $OUT/app/nginx.pid;
error_log $OUT/app/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000;
       server { listen 127.0.0.1:$APP; location / { return 200 "ok\n"; } } }
CONF
nginx -p "$OUT/app" -c "$OUT/app/nginx.conf" > /dev/null 2>&1 & PIDS+=($!)
cat > "$OUT/web.yaml" <<YAML
service: web
inbound:  { listen: 127.0.0.1:0, app: 127.0.0.1:1 }
outbound: { listen: 127.0.0.1:$A_LISTEN }
admin:    { listen: 127.0.0.1:$A_ADMIN }
tls:      { cert: $PKI/web.pem, key: $PKI/web.key, trustBundle: $PKI/ca.pem }
resources:
  - { kind: Instance, service: payments, address: 127.0.0.1, port: $B }
YAML
cat > "$OUT/payments.yaml" <<YAML
service: payments
inbound:  { listen: 127.0.0.1:$B, app: 127.0.0.1:$APP }
outbound: { listen: 127.0.0.1:0 }
admin:    { listen: 127.0.0.1:$B_ADMIN }
tls:      { cert: $PKI/payments.pem, key: $PKI/payments.key, trustBundle: $PKI/ca.pem }
YAML
for side in payments web; do
    # shellcheck disable=SC2086
    env $ENV "$BIN/sidecar" --config "$OUT/$side.yaml" --workers "$WORKERS" --access-log "$ACCESS_LOG" \
        > /dev/null 2> "$OUT/$side.err" & PIDS+=($!)
    eval "PID_$side=$!"
done
for admin in $A_ADMIN $B_ADMIN; do
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin/ready" > /dev/null && break; sleep 0.05; done
    curl -sf "http://127.0.0.1:$admin/ready" > /dev/null || { cat "$OUT"/*.err >&2; exit 1; }
done
curl -sf -H 'Host: payments' "http://127.0.0.1:$A_LISTEN/" > /dev/null || { echo "the pair does not answer" >&2; exit 1; }
sleep "$IDLE_S"
mib() { awk '{ printf "%.1f", $1 / 1024 }' <<< "$1"; }
declare -A IDLE
for side in web payments; do
    pid_var=PID_$side; pid=${!pid_var}
    IDLE[$side]=$(kib_of "$pid" VmRSS)
    python3 "$ROOT/bench/smaps.py" "$pid" "$side idle"
done
wrk -t 2 -c "$CONNS" -d "${LOAD_S}s" -H 'Host: payments' "http://127.0.0.1:$A_LISTEN/" | grep -E 'Requests/sec|Non-2xx|errors' || true
for side in web payments; do
    pid_var=PID_$side; pid=${!pid_var}
    python3 "$ROOT/bench/smaps.py" "$pid" "$side after load"
    echo "$side: idle_rss_mib=$(mib "${IDLE[$side]}") peak_rss_mib=$(mib "$(kib_of "$pid" VmHWM)")" \
        "after_load_rss_mib=$(mib "$(kib_of "$pid" VmRSS)") threads=$(ls "/proc/$pid/task" | wc -l)"
done
