#!/usr/bin/env bash
# Propagation benchmark (release builds): N real dynamic sidecars (default 100; one worker,
# access log off) on loopback against one `control-plane serve`; for each of CHANGES (default
# 50) changes, the time from sending `apply` to the last sidecar's acknowledgement (its next
# watch reports the version it applied, which `GET /v1/proxies` shows as appliedVersion);
# p50/p99 over the changes; VmRSS of every sidecar and of the control plane at the end.
#
#   bench/propagation.sh                           # build sidecar + control-plane (release), N=100
#   N=50 CHANGES=50 POLL_MS=10 SKIP_BUILD=1 bench/propagation.sh
#   N=3 CHANGES=5 SMAPS=bench/smaps.py SKIP_BUILD=1 bench/propagation.sh   # then SCRIPT PID of the first sidecar
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100}
CHANGES=${CHANGES:-50}
POLL_MS=${POLL_MS:-10}   # how often GET /v1/proxies is asked during a change
OUT=${OUT:-$ROOT/bench/out/propagation-$(date -u +%Y%m%dT%H%M%S)}
BIN=${BIN:-$ROOT/.build-release/release}

command -v python3 >/dev/null || { echo "bench/propagation.sh: needs python3" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    for product in control-plane sidecar; do  # one build at a time (the shared lock): the machine is shared
        echo "building $product (release)…" >&2
        (cd "$ROOT" && flock /tmp/mesh-build.lock nice -n 15 ./scripts/build-release.sh --product "$product" 2>&1 | tail -3) >&2
    done
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$OUT/data" "$OUT/sidecars"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
cleanup() {  # sidecars first (they deregister), then the control plane
    for pid in "${PIDS[@]:1}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]:1}"; do wait "$pid" 2>/dev/null || true; done
    kill "${PIDS[0]}" 2>/dev/null || true
    wait "${PIDS[0]}" 2>/dev/null || true
}
trap cleanup EXIT

"$BIN/control-plane" serve --data-dir "$OUT/data" --listen 127.0.0.1:0 > "$OUT/serve.out" 2> "$OUT/serve.err" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 200); do grep -q '^listening on ' "$OUT/serve.out" && break; sleep 0.05; done
URL=$(sed -n 's/^listening on //p' "$OUT/serve.out")
[[ -n "$URL" ]] || { echo "control plane did not start: $(cat "$OUT/serve.err")" >&2; exit 1; }
cp "$OUT/data/ca.pem" "$OUT/sidecars/ca.pem"
cli() { "$BIN/control-plane" "$@" --data-dir "$OUT/data"; }
printf 'kind: Service\nname: payments\n---\nkind: Route\nservice: payments\nrules:\n  - match: { pathPrefix: /c0 }\n    backends: [ { weight: 100 } ]\n' \
    | cli apply -f - > /dev/null
cli token create --service web --ttl 1h > "$OUT/sidecars/web.token"

echo "starting $N sidecars…" >&2
for i in $(seq 0 $((N - 1))); do
    cat > "$OUT/sidecars/web-$i.yaml" <<EOF
service: web
inbound:  { listen: 127.0.0.1:0, app: 127.0.0.1:1 }
outbound: { listen: 127.0.0.1:0 }
admin:    { listen: 127.0.0.1:0 }
controlPlane: { address: $URL, tokenFile: web.token, caFile: ca.pem, stateDir: state-$i, dependencies: [ payments ] }
EOF
    "$BIN/sidecar" --config "$OUT/sidecars/web-$i.yaml" --workers 1 --access-log off --log-level warning \
        > /dev/null 2> "$OUT/sidecars/web-$i.log" &
    PIDS+=("$!")
done
SIDECARS=("${PIDS[@]:1}")

python3 - "$URL" "$OUT" "$N" "$CHANGES" "$SERVER" "$POLL_MS" "${SIDECARS[@]}" <<'PY' | tee "$OUT/results.txt"
import http.client, json, math, os, ssl, sys, time

url, out, n, changes, server, poll = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]) / 1000
sidecars = sys.argv[7:]
host, port = url.removeprefix("https://").rsplit(":", 1)
context = ssl.create_default_context(cafile=f"{out}/data/ca.pem")
token = open(f"{out}/data/admin.token").read().strip()
headers = {"authorization": f"Bearer {token}"}
connection = http.client.HTTPSConnection(host, int(port), context=context)

def request(method, path, body=None):
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
    return data

def proxies():
    return json.loads(request("GET", "/v1/proxies"))

def all_at(version):
    listed = proxies()
    return len(listed) == n and all(int(p.get("appliedVersion") or 0) >= version for p in listed)

def status_mib(pid, field, path="status"):
    for line in open(f"/proc/{pid}/{path}"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")

def rss_mib(pid): return status_mib(pid, "VmRSS")

deadline = time.monotonic() + 120
while True:
    exited = [pid for pid in sidecars if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"]
    if exited:
        raise SystemExit(f"{len(exited)} sidecars exited (see {out}/sidecars/web-*.log)")
    listed = proxies()
    if len(listed) == n and all(p.get("appliedVersion") == p.get("currentVersion") for p in listed):
        break
    if time.monotonic() > deadline:
        raise SystemExit(f"only {len(listed)} of {n} sidecars registered and current after 120 s")
    time.sleep(0.1)
print(f"sidecars={n} registered_and_current=yes", flush=True)
time.sleep(1)  # every watch suspended again at the current version

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

cpu_before = sum(cpu_seconds(pid) for pid in sidecars)
server_cpu_before = cpu_seconds(server)
latencies = []
for change in range(1, changes + 1):
    route = ("kind: Route\nservice: payments\nrules:\n"
             f"  - match: {{ pathPrefix: /c{change} }}\n    backends: [ {{ weight: 100 }} ]\n")
    started = time.monotonic()
    applied = json.loads(request("POST", "/v1/apply", route))
    version = int(applied["applied"][0]["resourceVersion"])
    while not all_at(version):
        if time.monotonic() - started > 30:
            raise SystemExit(f"change {change}: not every sidecar acknowledged version {version} within 30 s")
        # Polled every POLL_MS (default 10): back to back, answering the polls took the control
        # plane as much CPU as the change itself, on the same two cores.
        time.sleep(poll)
    latencies.append((time.monotonic() - started) * 1000)
    time.sleep(0.2)  # let every watch suspend again before the next change

def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]  # nearest rank

cpu = sum(cpu_seconds(pid) for pid in sidecars) - cpu_before
server_cpu = cpu_seconds(server) - server_cpu_before
rss = [rss_mib(pid) for pid in sidecars]
# VmRSS counts the binary's and shared libraries' pages, which the N processes share; RssAnon
# is what each sidecar has to itself, Pss its share of everything.
anon = [status_mib(pid, "RssAnon") for pid in sidecars]
pss = [status_mib(pid, "Pss", "smaps_rollup") for pid in sidecars]
print(f"changes={changes}")
print(f"apply_to_last_ack_p50_ms={percentile(latencies, 50):.1f}")
print(f"apply_to_last_ack_p99_ms={percentile(latencies, 99):.1f}")
print(f"apply_to_last_ack_max_ms={max(latencies):.1f}")
print(f"sidecar_cpu_ms_per_change_each={cpu / changes / n * 1000:.2f}")
print(f"sidecars_cpu_ms_per_change_all={cpu / changes * 1000:.1f}")
print(f"control_plane_cpu_ms_per_change={server_cpu / changes * 1000:.1f}")
print(f"sidecar_rss_median_mib={percentile(rss, 50):.1f}")
print(f"sidecar_rss_max_mib={max(rss):.1f}")
print(f"sidecar_rss_anon_median_mib={percentile(anon, 50):.1f}")
print(f"sidecar_pss_median_mib={percentile(pss, 50):.1f}")
print(f"control_plane_rss_mib={rss_mib(server):.1f}")
with open(f"{out}/latencies.txt", "w") as f:
    f.write("\n".join(f"{v:.2f}" for v in latencies) + "\n")
PY
[[ -n "${SMAPS:-}" ]] && python3 "$SMAPS" "${SIDECARS[0]}"
echo "load_before=$LOAD_BEFORE load_after=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/results.txt"
echo "results in $OUT" >&2
