#!/usr/bin/env bash
# Idle memory of one static sidecar (release build, the user's defaults: a worker per core,
# access log on): /proc/PID/smaps_rollup once it answers /ready and has sat idle for IDLE_S
# seconds; Rss split into file-backed (the binary and shared libraries, shared between
# sidecars on a host) and anonymous (its own), and the thread count.
#
#   bench/memory.sh                      # .build-release/release/sidecar
#   BIN=/path/to/dir ARGS="--workers 1" bench/memory.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/.build-release/release}
IDLE_S=${IDLE_S:-2}
ARGS=${ARGS:-}
OUT=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$OUT"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=root" \
    -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=web" -keyout "$OUT/web.key" -out "$OUT/web.csr" 2>/dev/null
printf 'subjectAltName=URI:spiffe://mesh.local/service/web\nextendedKeyUsage=serverAuth,clientAuth\n' > "$OUT/web.ext"
openssl x509 -req -in "$OUT/web.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial -days 1 \
    -extfile "$OUT/web.ext" -out "$OUT/web.pem" 2>/dev/null
ADMIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/web.yaml" <<YAML
service: web
inbound:  { listen: 127.0.0.1:0, app: 127.0.0.1:1 }
outbound: { listen: 127.0.0.1:0 }
admin:    { listen: 127.0.0.1:$ADMIN }
tls:      { cert: web.pem, key: web.key, trustBundle: ca.pem }
YAML
# shellcheck disable=SC2086
"$BIN/sidecar" --config "$OUT/web.yaml" $ARGS > /dev/null 2> "$OUT/err" &
PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$ADMIN/ready" > /dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$ADMIN/ready" > /dev/null || { cat "$OUT/err" >&2; exit 1; }
sleep "$IDLE_S"
[[ -n "${SMAPS:-}" ]] && python3 "$SMAPS" "$PID"
awk -v threads="$(ls /proc/$PID/task | wc -l)" '
    /^Rss:/ {rss=$2} /^Pss:/ {pss=$2} /^Anonymous:/ {anon=$2}
    /^Shared_Clean:/ {sc=$2} /^Private_Clean:/ {pc=$2} /^Private_Dirty:/ {pd=$2}
    END {printf "rss_mib=%.1f pss_mib=%.1f anon_mib=%.1f file_mib=%.1f shared_clean_mib=%.1f private_mib=%.1f threads=%d\n",
         rss/1024, pss/1024, anon/1024, (rss-anon)/1024, sc/1024, (pc+pd)/1024, threads}' "/proc/$PID/smaps_rollup"
