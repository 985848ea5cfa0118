#!/usr/bin/env bash
# Control-plane micro-benchmark: apply latency/throughput over HTTPS (one TLS connection per
# request, as the CLI does) and change -> watcher latency. Runs the debug build unless
# BIN=/path/to/control-plane is given. Usage: bench/control-plane.sh [APPLIES]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/debug/control-plane}
APPLIES=${1:-200}
[ -x "$BIN" ] || { echo "build first: swift build (missing $BIN)" >&2; exit 1; }

DIR=$(mktemp -d)
"$BIN" serve --data-dir "$DIR" --listen 127.0.0.1:0 >"$DIR/serve.out" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$DIR/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$DIR/serve.out")
TOKEN=$(cat "$DIR/admin.token")
CURL=(curl -s --cacert "$DIR/ca.pem" -H "Authorization: Bearer $TOKEN")
now() { date +%s.%N; }

# 1. Sequential applies, each its own connection and transaction.
start=$(now)
for i in $(seq "$APPLIES"); do
  printf 'kind: Service\nname: bench-%d\nport: %d\n' "$i" "$i" |
    "${CURL[@]}" -o /dev/null -w '%{http_code}\n' --data-binary @- -H 'Content-Type: application/yaml' "$URL/v1/apply"
done | sort | uniq -c | sed 's/^/apply status count: /'
end=$(now)
awk -v s="$start" -v e="$end" -v n="$APPLIES" \
  'BEGIN { printf "applies: %d in %.2f s = %.0f/s, %.1f ms each (incl. curl start + TLS handshake)\n", n, e-s, n/(e-s), 1000*(e-s)/n }'

# 2. Watch latency: a long-poll waiting at the current version, then one change.
JOIN=$("${CURL[@]}" -d '{"service":"web"}' "$URL/v1/tokens" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
total=0
ROUNDS=10
for r in $(seq $ROUNDS); do
  V=$(curl -s --cacert "$DIR/ca.pem" -H "Authorization: Bearer $JOIN" "$URL/v1/snapshot/web" | sed 's/.*"version":"\([0-9]*\)".*/\1/')
  curl -s --cacert "$DIR/ca.pem" -H "Authorization: Bearer $JOIN" -o /dev/null "$URL/v1/snapshot/web?version=$V" && now >"$DIR/woke" &
  W=$!
  until "${CURL[@]}" "$URL/metrics" | grep -q '^control_plane_watchers 1'; do sleep 0.01; done
  t0=$(now)
  printf 'kind: Service\nname: watched\nport: %d\n' "$r" | "${CURL[@]}" -o /dev/null --data-binary @- "$URL/v1/apply"
  wait $W
  total=$(awk -v a="$total" -v s="$t0" -v e="$(cat "$DIR/woke")" 'BEGIN { print a + (e - s) }')
done
awk -v t="$total" -v n="$ROUNDS" 'BEGIN { printf "change -> watcher woke (apply request + 20 ms debounce + response): %.1f ms mean over %d\n", 1000*t/n, n }'
ls -la "$DIR/mesh.sqlite"* | awk '{ print "store file:", $5, $9 }'
