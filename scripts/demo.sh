#!/usr/bin/env bash
# The demo mesh, the README's first command. Builds release, then runs on 127.0.0.1:
#   a control plane (SQLite in a temp data dir), three services web -> payments (v1 and v2)
#   -> ledger, each a demo app with a dynamic sidecar beside it, a steady load generator
#   (5 requests/s through its own sidecar to web), and a real Prometheus scraping every
#   sidecar and the control plane. Prints `mesh demo ready: ...` and commands to try, runs
#   until Ctrl-C or SIGTERM, then stops everything it started (by PID) and exits 0.
#
#   ./scripts/demo.sh             the mesh above
#   ./scripts/demo.sh --static    the static-certificate two-service demo (scripts/demo-static.sh)
#   ./scripts/demo.sh --dynamic   the two-service control-plane walkthrough (scripts/demo-dynamic.sh)
#
# Environment: MESH_BIN=.build/debug uses built binaries (no release build); DEMO_DIR=DIR
# works in DIR and keeps it (default: a temp dir removed at a clean stop); DEMO_PORT_OFFSET=N
# moves every port by N; DEMO_RPS=N sets the load; DEMO_EXIT_AFTER_READY=1 stops once the
# ready line is printed and Prometheus has scraped every target (for tests).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
case " $* " in
*" --static "*) args=(); for a in "$@"; do [[ $a == --static ]] || args+=("$a"); done; exec ./scripts/demo-static.sh "${args[@]}" ;;
*" --dynamic "*) exec ./scripts/demo-dynamic.sh "$@" ;;
*" --help "* | *" -h "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
if (($#)); then echo "demo: unknown argument $1 (try --help)" >&2; exit 2; fi

steps=5
step_number=0
step() { step_number=$((step_number + 1)); printf '[%d/%d] %s\n' "$step_number" "$steps" "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

step "checking system packages (installs libssl-dev, libsqlite3-dev, curl, prometheus ... when missing)"
./scripts/install-deps.sh

if [[ -n "${MESH_BIN:-}" ]]; then
    step "using the binaries in $MESH_BIN (MESH_BIN set: no build)"
    bin=$(cd "$MESH_BIN" && pwd)
else
    step "building sidecar, control-plane and demo-app in release mode, in one swift build: about 6 to 9 minutes the first time on 2 cores, seconds after"
    ./scripts/build-release.sh
    bin="$root/.build-release/release"
fi
for tool in sidecar control-plane demo-app; do
    [[ -x "$bin/$tool" ]] || die "$bin/$tool is missing: build it or unset MESH_BIN"
done
prometheus_bin=$(command -v prometheus || echo "$root/.build-tools/prometheus")
[[ -x "$prometheus_bin" ]] || die "no prometheus binary on PATH or in .build-tools/ (scripts/install-deps.sh puts it there)"

# Ports: every one checked before anything starts, so a taken one is named, not discovered
# later as a connection refused.
offset=${DEMO_PORT_OFFSET:-0}
p() { echo $(($1 + offset)); }
cp_port=$(p 15010) prom_port=$(p 9090)
# service  app-port  admin  outbound  inbound  labels
mesh_services=(
    "web          $(p 8080) $(p 15000) $(p 15001) $(p 15006) version=v1"
    "payments-v1  $(p 8081) $(p 16000) $(p 16001) $(p 16006) version=v1"
    "payments-v2  $(p 8082) $(p 17000) $(p 17001) $(p 17006) version=v2"
    "ledger       $(p 8083) $(p 18000) $(p 18001) $(p 18006) version=v1"
    "loadgen      $(p 8084) $(p 19000) $(p 19001) $(p 19006) version=v1"
)
step "checking that the demo's ports are free on 127.0.0.1"
check_port() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        die "port $1 on 127.0.0.1 ($2) is already in use: stop what listens there (ss -ltnp 'sport = :$1') or move every demo port with DEMO_PORT_OFFSET=1000"
    fi
}
check_port "$cp_port" "control plane API"
check_port "$prom_port" "Prometheus"
for entry in "${mesh_services[@]}"; do
    read -r name app admin outbound inbound _ <<<"$entry"
    check_port "$app" "$name app"
    check_port "$admin" "$name sidecar admin"
    check_port "$outbound" "$name sidecar outbound"
    check_port "$inbound" "$name sidecar inbound"
done

if [[ -n "${DEMO_DIR:-}" ]]; then
    mkdir -p "$DEMO_DIR" && dir=$(cd "$DEMO_DIR" && pwd) && keep_dir=1
else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/mesh-demo.XXXXXX") && keep_dir=0
fi
mkdir -p "$dir/logs" "$dir/try"
umask 077  # tokens, keys and the Prometheus data stay private
: >"$dir/pids"

pids=() names=() logs=()
# start NAME LOG COMMAND...: runs it in the background, remembered by PID.
start() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    pids+=($!) names+=("$name") logs+=("$log")
    echo "$! $name" >>"$dir/pids"
}
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}
# log_end FILE LINES: the last LINES lines of a log, indented.
log_end() { tail -n "$2" "$1" 2>/dev/null | sed 's/^/  /'; }
# all_alive: dies naming the first started process that exited, with the end of its log.
all_alive() {
    for index in "${!pids[@]}"; do
        alive "${pids[$index]}" && continue
        die "${names[$index]} (pid ${pids[$index]}) exited; the end of ${logs[$index]}:
$(log_end "${logs[$index]}" 8)"
    done
}
stopped=0
stop_all() {
    ((stopped)) && return
    stopped=1
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
        local running=0
        for pid in "${pids[@]}"; do alive "$pid" && running=1; done
        ((running)) || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
on_exit() {
    local status=$?
    stop_all
    if ((status == 0 && !keep_dir)); then rm -rf "$dir"; elif ((status != 0)); then echo "demo: logs are in $dir/logs" >&2; fi
    exit "$status"
}
trap on_exit EXIT
trap 'echo; echo "stopping the demo mesh"; exit 0' INT TERM

step "starting the control plane, Prometheus, 4 services with their sidecars and the load generator (logs: $dir/logs)"
cpdir="$dir/control-plane"
start control-plane "$dir/logs/control-plane.log" "$bin/control-plane" serve --data-dir "$cpdir" --listen "127.0.0.1:$cp_port"
for _ in $(seq 1 300); do grep -q '^listening on' "$dir/logs/control-plane.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening on' "$dir/logs/control-plane.log" || die "the control plane did not start: $(tail -n 5 "$dir/logs/control-plane.log")"
cli() { "$bin/control-plane" "$@" --data-dir "$cpdir"; }
cli ca bundle >"$dir/ca.pem"

cat >"$dir/policy.yaml" <<'YAML'
kind: Service
name: web
---
kind: Service
name: payments
---
kind: Service
name: ledger
---
kind: Route
service: payments
rules:
  - match: { pathPrefix: / }
    timeout: 2s
    retries: { attempts: 3, perTryTimeout: 500ms }
    backends: [ { subset: { version: v1 }, weight: 100 } ]
---
kind: AuthorizationPolicy
service: payments
default: deny
allow: [ { from: [ web ] } ]
---
kind: AuthorizationPolicy
service: ledger
default: deny
allow: [ { from: [ payments ] } ]
YAML
cli apply -f "$dir/policy.yaml" >"$dir/logs/apply.log"

# Prometheus: a plain process with a generated config, its data in the demo dir. Each sidecar
# target carries a `service` label (its metrics only name the other side), which
# `control-plane stat`, the recording rules and the dashboard group by.
{
    cat <<YAML
global: { scrape_interval: 5s, evaluation_interval: 5s }
rule_files: [ "$root/deploy/prometheus/rules.yaml", "$root/deploy/prometheus/alerts.yaml" ]
scrape_configs:
  - job_name: control-plane
    scheme: https
    tls_config: { ca_file: "$cpdir/ca.pem" }
    static_configs: [ { targets: [ "127.0.0.1:$cp_port" ] } ]
  - job_name: sidecars
    static_configs:
YAML
    for entry in "${mesh_services[@]}"; do
        read -r name app admin outbound inbound labels <<<"$entry"
        printf '      - { targets: [ "127.0.0.1:%s" ], labels: { service: %s, %s } }\n' \
            "$admin" "${name%-v[0-9]}" "${labels/=/: }"
    done
} >"$dir/prometheus.yml"
start prometheus "$dir/logs/prometheus.log" "$prometheus_bin" --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/prometheus-data" --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$prom_port"

# Services: name[-version] app-port admin outbound inbound; each app calls the next service
# through its own sidecar's outbound port.
calls_web="payments/pay" calls_payments="ledger/entries"
for entry in "${mesh_services[@]}"; do
    read -r name app admin outbound inbound labels <<<"$entry"
    service=${name%-v[0-9]}
    case $service in
    web) dependencies="[ payments ]" call=(--call "$calls_web" --via "127.0.0.1:$outbound") ;;
    payments) dependencies="[ ledger ]" call=(--call "$calls_payments" --via "127.0.0.1:$outbound") ;;
    loadgen) dependencies="[ web ]" call=() ;;
    *) dependencies="[ ]" call=() ;;
    esac
    [[ -f "$dir/$service.token" ]] || cli token create --service "$service" --ttl 24h >"$dir/$service.token"
    cat >"$dir/$name.yaml" <<YAML
service: $service
inbound:  { listen: 127.0.0.1:$inbound, app: 127.0.0.1:$app }
outbound: { listen: 127.0.0.1:$outbound }
admin:    { listen: 127.0.0.1:$admin }
controlPlane: { address: https://127.0.0.1:$cp_port, tokenFile: $service.token, caFile: ca.pem, stateDir: state/$name,
                labels: { ${labels/=/: } }, dependencies: $dependencies }
YAML
    [[ $service == loadgen ]] || start "$name app" "$dir/logs/$name-app.log" "$bin/demo-app" "$name" "127.0.0.1:$app" "${call[@]}"
    start "$name sidecar" "$dir/logs/$name-sidecar.log" "$bin/sidecar" run --config "$dir/$name.yaml" \
        --workers 1 --drain-timeout 2s
done
loadgen_outbound=$(p 19001)

# The whole chain answers: loadgen's sidecar -> web -> payments -> ledger.
for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: web' "http://127.0.0.1:$loadgen_outbound/" || true)
    [[ $code == 200 ]] && break
    all_alive
    sleep 0.2
done
if [[ $code != 200 ]]; then
    for entry in "${mesh_services[@]}"; do
        read -r name _ <<<"$entry"
        printf 'demo: the end of %s:\n%s\n' "$dir/logs/$name-sidecar.log" "$(log_end "$dir/logs/$name-sidecar.log" 5)" >&2
    done
    die "web -> payments -> ledger did not answer 200 within 2 minutes (last: $code, 000 = no HTTP answer)"
fi
start "load generator" "$dir/logs/load.log" "$bin/demo-app" load --call web/ --via "127.0.0.1:$loadgen_outbound" \
    --rps "${DEMO_RPS:-5}"

step "waiting for Prometheus to scrape every sidecar and the control plane"
targets=$((${#mesh_services[@]} + 1))
prom="http://127.0.0.1:$prom_port"
up=0
for _ in $(seq 1 600); do
    answer=$(curl -s --max-time 5 "$prom/api/v1/targets?state=active" || true)
    up=$(grep -o '"health":"up"' <<<"$answer" | wc -l || true)
    ((up >= targets)) && break
    all_alive
    sleep 0.2
done
((up >= targets)) || die "Prometheus scraped $up of $targets targets within 2 minutes; see $prom/targets and $dir/logs/prometheus.log"

# Changes to try, written as files so the printed commands paste as they are.
cat >"$dir/try/canary.yaml" <<'YAML'
# 90/10 canary: a tenth of payments' traffic goes to v2
kind: Route
service: payments
rules:
  - match: { pathPrefix: / }
    timeout: 2s
    retries: { attempts: 3, perTryTimeout: 500ms }
    backends: [ { subset: { version: v1 }, weight: 90 }, { subset: { version: v2 }, weight: 10 } ]
YAML
cat >"$dir/try/breaker.yaml" <<'YAML'
# A circuit breaker on ledger (one request in flight) while ledger is slowed down to 400 ms:
# payments' sidecars answer the overflow with 503 circuit-open at once.
kind: TrafficPolicy
service: ledger
circuitBreaker: { maxRequests: 1, maxPendingRequests: 1 }
---
kind: Route
service: ledger
rules:
  - match: { pathPrefix: / }
    fault: { delay: { percent: 100, duration: 400ms } }
YAML
cat >"$dir/try/fault.yaml" <<'YAML'
# A fault: payments' sidecars fail a fifth of the calls to ledger with 500.
kind: Route
service: ledger
rules:
  - match: { pathPrefix: / }
    fault: { abort: { percent: 20, status: 500 } }
YAML
# The commands below paste as they are into any shell: plain programs (no function of this
# script), every path quoted for the shell (printf %q), no quotes for a terminal to lose.
cp="$bin/control-plane"
[[ $cp == "$root/"* ]] && cp=${cp#"$root/"}
cp=$(printf '%q' "$cp") data=$(printf '%q' "$cpdir") try=$(printf '%q' "$dir/try")
echo "mesh demo ready: Prometheus $prom (graph: $prom/graph, targets: $prom/targets) · control plane https://127.0.0.1:$cp_port (data dir $cpdir) · web through loadgen's sidecar: curl -H 'Host: web' http://127.0.0.1:$loadgen_outbound/ · logs $dir/logs"
cat <<EOF

Load: ${DEMO_RPS:-5} requests/s, loadgen -> web -> payments (v1) -> ledger. Try, from $(printf '%q' "$root"):
  $cp stat --prometheus $prom                          # golden metrics per service and edge
  $cp apply -f $try/canary.yaml --data-dir $data      # 90/10 canary to payments v2
  $cp apply -f $try/fault.yaml --data-dir $data       # 20% of ledger calls fail with 500
  $cp apply -f $try/breaker.yaml --data-dir $data     # slow ledger + a circuit breaker
  $cp delete route ledger --data-dir $data                # undo the fault / the slowdown
  $cp delete trafficpolicy ledger --data-dir $data        # undo the breaker
  $cp get proxies --data-dir $data                        # which config each sidecar applied
  curl -s -H 'Host: payments' http://127.0.0.1:$(p 15001)/pay      # web's sidecar -> payments, as web's app calls it
  curl -s http://127.0.0.1:$(p 16000)/metrics | grep ^sidecar_requests_total     # payments-v1's sidecar
Ctrl-C stops everything.
EOF

if [[ "${DEMO_EXIT_AFTER_READY:-}" == 1 ]]; then exit 0; fi
while true; do
    all_alive
    sleep 1 &
    wait $! || true
done
