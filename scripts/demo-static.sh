#!/usr/bin/env bash
# Builds the mesh in release mode and runs the README's static two-service example:
# demo apps `web` (127.0.0.1:8080) and `payments` (127.0.0.1:9090), each behind its sidecar,
# with certificates minted here. Sends traffic through the mesh and shows where to look.
# Ctrl-C stops everything it started. `--once` sends the traffic and exits.
# `--dynamic` runs the same mesh from a control plane instead (scripts/demo-dynamic.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *" --dynamic "* ]]; then exec ./scripts/demo-dynamic.sh "$@"; fi
./scripts/install-deps.sh
bin=${MESH_BIN:-.build-release/release}
if [[ -z "${MESH_BIN:-}" ]]; then
    echo "building release (every product in one swift build): about 6 to 9 minutes the first time on 2 cores, seconds after"
    ./scripts/build-release.sh
fi
# Every port checked before anything starts, so a taken one is named, not discovered later as
# a connection refused.
check_port() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "demo: port $1 on 127.0.0.1 ($2) is already in use: stop what listens there (ss -ltnp 'sport = :$1')" >&2
        exit 1
    fi
}
for entry in "8080 web app" "9090 payments app" "15000 web sidecar admin" "15001 web sidecar outbound" \
    "15006 web sidecar inbound" "16000 payments sidecar admin" "16001 payments sidecar outbound" \
    "16006 payments sidecar inbound"; do
    check_port "${entry%% *}" "${entry#* }"
done
dir=demo
rm -rf "$dir" && mkdir -p "$dir/certs"

# A root CA and one P-256 certificate per service, each carrying its SPIFFE ID as a URI SAN.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=mesh demo root" \
    -keyout "$dir/certs/ca.key" -out "$dir/certs/ca.pem" 2>/dev/null
for service in web payments; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$service" \
        -keyout "$dir/certs/$service.key" -out "$dir/certs/$service.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://mesh.local/service/%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$service" \
        > "$dir/certs/$service.ext"
    openssl x509 -req -in "$dir/certs/$service.csr" -CA "$dir/certs/ca.pem" -CAkey "$dir/certs/ca.key" \
        -CAcreateserial -days 1 -extfile "$dir/certs/$service.ext" -out "$dir/certs/$service.pem" 2>/dev/null
done

cat > "$dir/web.yaml" <<'YAML'
service: web
inbound:  { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }
outbound: { listen: 127.0.0.1:15001 }
admin:    { listen: 127.0.0.1:15000 }
tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
resources:
  - kind: Instance
    service: payments
    address: 127.0.0.1
    port: 16006
    labels: { version: v1 }
  - kind: Route
    service: payments
    rules:
      - match: { pathPrefix: /pay }
        timeout: 2s
        retries: { attempts: 3, perTryTimeout: 500ms }
        backends: [ { subset: { version: v1 }, weight: 100 } ]
      - match: { pathPrefix: / }
YAML
cat > "$dir/payments.yaml" <<'YAML'
service: payments
inbound:  { listen: 127.0.0.1:16006, app: 127.0.0.1:9090 }
outbound: { listen: 127.0.0.1:16001 }
admin:    { listen: 127.0.0.1:16000 }
tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
resources:
  - kind: AuthorizationPolicy
    service: payments
    default: deny
    allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
YAML

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$bin/demo-app" web 127.0.0.1:8080 >"$dir/web-app.log" 2>&1 & pids+=($!)
"$bin/demo-app" payments 127.0.0.1:9090 >"$dir/payments-app.log" 2>&1 & pids+=($!)
"$bin/sidecar" --config "$dir/web.yaml" >"$dir/web-access.log" 2>"$dir/web-sidecar.log" & pids+=($!)
"$bin/sidecar" --config "$dir/payments.yaml" >"$dir/payments-access.log" 2>"$dir/payments-sidecar.log" & pids+=($!)

for _ in $(seq 1 100); do
    # Each sidecar's admin /ready (a probe of the mTLS port itself would count as a failed handshake).
    curl -sf -o /dev/null http://127.0.0.1:15000/ready && curl -sf -o /dev/null http://127.0.0.1:16000/ready && break
    sleep 0.1
done

# Prints a command so that it pastes as it is (arguments with spaces or quotes quoted), then runs it.
run() {
    local shown=() arg
    for arg in "$@"; do [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]] && shown+=("$arg") || shown+=("${arg@Q}"); done
    echo "\$ ${shown[*]}"
    "$@"
    echo
}
echo "== through the mesh: web's app calls payments via its sidecar (plain HTTP to localhost:15001)"
run curl -sS -x http://127.0.0.1:15001 http://payments/pay
run curl -sS -H 'Host: payments' -X POST -d 'amount=42' http://127.0.0.1:15001/pay
echo "== refused by payments' AuthorizationPolicy (403 forbidden), and an unknown service (404 no-route)"
run curl -sS -i -x http://127.0.0.1:15001 http://payments/admin
run curl -sS -i -x http://127.0.0.1:15001 http://nowhere/
echo "== plain bytes on payments' mTLS port never reach the app"
run curl -sS --max-time 3 http://127.0.0.1:16006/pay || true
echo "== metrics (Prometheus text) on the admin port"
echo "\$ curl -sS http://127.0.0.1:15000/metrics | grep '^sidecar_requests_total'"
curl -sS http://127.0.0.1:15000/metrics | grep '^sidecar_requests_total'
echo
echo "== access logs (JSON, one line per request): $dir/web-access.log, $dir/payments-access.log"
tail -n 3 "$dir/web-access.log"
echo "== sidecar logs: $dir/web-sidecar.log, $dir/payments-sidecar.log"
if [[ "${1:-}" == "--once" ]]; then exit 0; fi
echo "The mesh is running; try the curl lines above. Ctrl-C stops everything."
wait
