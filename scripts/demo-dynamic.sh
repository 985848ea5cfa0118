#!/usr/bin/env bash
# The demo mesh in dynamic mode: a control plane (CA, registry, policy store) and two sidecars
# that start from a join token and the CA alone. The operator pushes routes and policy with
# the CLI while traffic flows; `get proxies` shows which version each sidecar applied.
# Ctrl-C stops everything it started. `--once` sends the traffic and exits.
# MESH_BIN=.build/debug uses already built binaries instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
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
for entry in "15010 control plane API" "8080 web app" "9090 payments app" "15000 web sidecar admin" \
    "15001 web sidecar outbound" "15006 web sidecar inbound" "16000 payments sidecar admin" \
    "16001 payments sidecar outbound" "16006 payments sidecar inbound"; do
    check_port "${entry%% *}" "${entry#* }"
done
dir=demo-dynamic
rm -rf "$dir" && mkdir -p "$dir"
umask 077  # join tokens and the data dir stay private
cp="$bin/control-plane"
# Prints a command so that it pastes as it is (arguments with spaces or quotes quoted), then runs it.
run() {
    local shown=() arg
    for arg in "$@"; do [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]] && shown+=("$arg") || shown+=("${arg@Q}"); done
    echo "\$ ${shown[*]}"
    "$@"
    echo
}
cli() { run "$cp" "$@" --data-dir "$dir/control-plane"; }
cli_quiet() { "$cp" "$@" --data-dir "$dir/control-plane"; }

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$cp" serve --data-dir "$dir/control-plane" --listen 127.0.0.1:15010 >"$dir/control-plane.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do grep -q '^listening on' "$dir/control-plane.log" 2>/dev/null && break; sleep 0.1; done
cat "$dir/control-plane.log"
cli_quiet ca bundle >"$dir/ca.pem"

for service in web payments; do
    cli_quiet token create --service "$service" --ttl 1h >"$dir/$service.token"
done
cat >"$dir/web.yaml" <<'YAML'
service: web
inbound:  { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }
outbound: { listen: 127.0.0.1:15001 }
admin:    { listen: 127.0.0.1:15000 }
controlPlane: { address: https://127.0.0.1:15010, tokenFile: web.token, caFile: ca.pem, dependencies: [ payments ] }
YAML
cat >"$dir/payments.yaml" <<'YAML'
service: payments
inbound:  { listen: 127.0.0.1:16006, app: 127.0.0.1:9090 }
outbound: { listen: 127.0.0.1:16001 }
admin:    { listen: 127.0.0.1:16000 }
controlPlane: { address: https://127.0.0.1:15010, tokenFile: payments.token, caFile: ca.pem, labels: { version: v1 } }
YAML
cat >"$dir/policy.yaml" <<'YAML'
kind: Service
name: payments
---
kind: Route
service: payments
rules:
  - match: { pathPrefix: /pay }
    timeout: 2s
    retries: { attempts: 3, perTryTimeout: 500ms }
    backends: [ { subset: { version: v1 }, weight: 100 } ]
  - match: { pathPrefix: / }
---
kind: AuthorizationPolicy
service: payments
default: deny
allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
YAML
cli apply -f "$dir/policy.yaml"

"$bin/demo-app" web 127.0.0.1:8080 >"$dir/web-app.log" 2>&1 & pids+=($!)
"$bin/demo-app" payments 127.0.0.1:9090 >"$dir/payments-app.log" 2>&1 & pids+=($!)
"$bin/sidecar" --config "$dir/web.yaml" >"$dir/web-access.log" 2>"$dir/web-sidecar.log" & pids+=($!)
"$bin/sidecar" --config "$dir/payments.yaml" >"$dir/payments-access.log" 2>"$dir/payments-sidecar.log" & pids+=($!)

# Ready once web has learned payments' registered endpoint.
for _ in $(seq 1 100); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:15001 http://payments/pay)" == 200 ]] && break
    sleep 0.1
done
echo "== sidecars got their certificates from the control plane and registered"
cli get proxies
echo "== through the mesh: web's app calls payments via its sidecar"
run curl -sS -x http://127.0.0.1:15001 http://payments/pay
echo "== refused by payments' AuthorizationPolicy (403 forbidden)"
run curl -sS -i -x http://127.0.0.1:15001 http://payments/admin
echo "== the operator opens /admin to web: the change reaches payments' sidecar while it runs"
sed -i 's|pathPrefix: /pay } ]|pathPrefix: / } ]|' "$dir/policy.yaml"
cli apply -f "$dir/policy.yaml"
for _ in $(seq 1 50); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:15001 http://payments/admin)" == 200 ]] && break
    sleep 0.1
done
run curl -sS -i -x http://127.0.0.1:15001 http://payments/admin
cli get proxies
echo "== each sidecar's applied config version and control-plane connection"
echo "\$ curl -sS http://127.0.0.1:15000/metrics | grep -E '^sidecar_(config_version|control_plane_connected|cert_expiry)'"
curl -sS http://127.0.0.1:15000/metrics | grep -E '^sidecar_(config_version|control_plane_connected|cert_expiry)'
echo
echo "== logs: $dir/control-plane.log, $dir/*-sidecar.log, access logs $dir/*-access.log"
if [[ " $* " == *" --once "* ]]; then exit 0; fi
echo "The mesh is running; try: $cp get proxies --data-dir $dir/control-plane"
echo "Ctrl-C stops everything."
wait
