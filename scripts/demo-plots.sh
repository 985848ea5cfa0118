#!/usr/bin/env bash
# Renders docs/img/*.png from a real demo run: starts scripts/demo.sh, lets the load settle,
# applies the 90/10 canary, then the fault on ledger, then removes the fault, and plots what
# the demo's Prometheus recorded with scripts/plot-demo.py (matplotlib over the HTTP API).
# About 4 minutes once the demo is built. Honours MESH_BIN and DEMO_PORT_OFFSET like demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's python3 (python3-matplotlib is a Debian package), even when another python3 is first on PATH.
py=python3
[[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-matplotlib >/dev/null
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mesh-plots.XXXXXX")
DEMO_DIR="$scratch/demo" ./scripts/demo.sh >"$scratch/demo.out" 2>&1 &
demo=$!
stop() {
    kill -TERM "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
    rm -rf "$scratch"
}
trap stop EXIT
echo "starting the demo (scripts/demo.sh; its output: $scratch/demo.out)"
until grep -q '^mesh demo ready: ' "$scratch/demo.out" 2>/dev/null; do
    kill -0 "$demo" 2>/dev/null || { cat "$scratch/demo.out"; exit 1; }
    sleep 1
done
bin=${MESH_BIN:-.build-release/release}
cli() { "$bin/control-plane" "$@" --data-dir "$scratch/demo/control-plane"; }
start=$(date +%s)
echo "load running; the canary in 60 s, the fault 60 s later, removed 60 s after that"
sleep 60
canary=$(date +%s) && cli apply -f "$scratch/demo/try/canary.yaml"
sleep 60
fault=$(date +%s) && cli apply -f "$scratch/demo/try/fault.yaml"
sleep 60
fixed=$(date +%s) && cli delete route ledger
sleep 45
"$py" scripts/plot-demo.py --prometheus "http://127.0.0.1:$((9090 + ${DEMO_PORT_OFFSET:-0}))" \
    --start "$start" --end "$(date +%s)" --out docs/img \
    --event "$canary" "90/10 canary" --event "$fault" "ledger fault 20%" --event "$fixed" "fault removed"
