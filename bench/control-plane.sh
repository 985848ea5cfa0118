#!/usr/bin/env bash
# Control-plane benchmark (release builds): registrations/s over keep-alive HTTPS connections,
# time from an `apply` to the last of 100 and of 1000 long-polling watchers receiving the new
# snapshot, and the server's VmRSS idle / per registered instance / per connected watcher.
# The load is `mesh-bench cp-load` (light in-process sidecars: one NIO event-loop group, one
# keep-alive TLS connection each); see bench/README.md for the setup and what is left out.
#
#   bench/control-plane.sh                          # build, 5 rounds
#   ROUNDS=7 WATCHERS=100,1000 REGISTRATIONS=1000 CONCURRENCY=50 SKIP_BUILD=1 bench/control-plane.sh
#   bench/control-plane.sh --store etcd             # REPLICAS=2 replicas over a 3-member etcd
#                                                   # cluster started here (etcd-server); load
#                                                   # spread over the replicas, applies to the first
#   REGISTRATIONS=10000 WATCHERS=10000 ROUNDS=2 bench/control-plane.sh --store etcd   # 10,000 light sidecars
set -euo pipefail

STORE=${STORE:-sqlite}
while (($#)); do
    case "$1" in
        --store) STORE=$2; shift 2 ;;
        *) echo "bench/control-plane.sh: unknown argument $1 (--store sqlite|etcd)" >&2; exit 2 ;;
    esac
done
REPLICAS=${REPLICAS:-$([[ $STORE == etcd ]] && echo 2 || echo 1)}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
WATCHERS=${WATCHERS:-100,1000}
REGISTRATIONS=${REGISTRATIONS:-1000}
CONCURRENCY=${CONCURRENCY:-50}
SERVICES=${SERVICES:-10}
THREADS=${THREADS:-1}
OUT=${OUT:-$ROOT/bench/out/control-plane-$(date -u +%Y%m%dT%H%M%S)}
BIN=${BIN:-$ROOT/.build-release/release}
HZ=$(getconf CLK_TCK)

command -v python3 >/dev/null || { echo "bench/control-plane.sh: needs python3" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    for product in control-plane mesh-bench; do  # one build at a time (the shared lock): the machine is shared
        echo "building $product (release)…" >&2
        (cd "$ROOT" && flock /tmp/mesh-build.lock nice -n 15 ./scripts/build-release.sh --product "$product" 2>&1 | tail -3) >&2
    done
fi
# Every watcher is a socket on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$OUT/data"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

PIDS=()
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done' EXIT
STORE_ARGS=()
if [[ $STORE == etcd ]]; then
    command -v etcd >/dev/null || { echo "bench/control-plane.sh: --store etcd needs etcd (apt-get install etcd-server)" >&2; exit 1; }
    # Three members on free loopback ports, data under $OUT/etcd (a fresh cluster every run).
    rm -rf "$OUT/etcd"
    read -r -a EPORTS <<< "$(python3 -c 'import socket
ports = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s); 
print(" ".join(str(s.getsockname()[1]) for s in ports))')"
    CLUSTER="e0=http://127.0.0.1:${EPORTS[3]},e1=http://127.0.0.1:${EPORTS[4]},e2=http://127.0.0.1:${EPORTS[5]}"
    ENDPOINTS="http://127.0.0.1:${EPORTS[0]},http://127.0.0.1:${EPORTS[1]},http://127.0.0.1:${EPORTS[2]}"
    for i in 0 1 2; do
        etcd --name "e$i" --data-dir "$OUT/etcd/e$i" --listen-client-urls "http://127.0.0.1:${EPORTS[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${EPORTS[$i]}" --listen-peer-urls "http://127.0.0.1:${EPORTS[$((i + 3))]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${EPORTS[$((i + 3))]}" --initial-cluster "$CLUSTER" \
            --initial-cluster-token "bench-$$" --log-level warn > "$OUT/etcd-e$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 0 1 2; do
        for _ in $(seq 300); do curl -sf "http://127.0.0.1:${EPORTS[$i]}/health" | grep -q '"true"' && break; sleep 0.1; done
    done
    STORE_ARGS=(--store etcd --etcd-endpoints "$ENDPOINTS" --etcd-prefix /bench)
fi

# Instances get a 1 h TTL: the bench sends no heartbeats, and a TTL expiry mid-run would bump
# the version and wake the watchers on its own. Every watcher holds a connection: the server's
# connection limit (default 1024) is raised to the largest watcher set plus the registering ones,
# and the long-poll timeout to 10 min: with 30 s, thousands of watchers armed over seconds time
# out and re-poll at different moments, and the server never holds all of them at once.
MAX_CONNECTIONS=$(( $(tr ',' '\n' <<< "$WATCHERS" | sort -n | tail -1) + CONCURRENCY + 64 ))
PORTS=()
for r in $(seq 0 $((REPLICAS - 1))); do
    DATA="$OUT/data"; ((r == 0)) || DATA="$OUT/data-$r"
    "$BIN/control-plane" serve --data-dir "$DATA" --listen 127.0.0.1:0 --instance-ttl 1h --instance-grace 1h \
        --max-connections "$MAX_CONNECTIONS" --watch-timeout 10m "${STORE_ARGS[@]}" \
        > "$OUT/serve-$r.out" 2> "$OUT/serve-$r.err" &
    PIDS+=($!)
    ((r == 0)) && SERVER=$!
    for _ in $(seq 200); do grep -q '^listening on' "$OUT/serve-$r.out" 2>/dev/null && break; sleep 0.05; done
    URL=$(sed -n 's/^listening on //p' "$OUT/serve-$r.out")
    [[ -n "$URL" ]] || { echo "control-plane did not start:" >&2; cat "$OUT/serve-$r.out" "$OUT/serve-$r.err" >&2; exit 1; }
    PORTS+=("${URL##*:}")
done
PORT=${PORTS[0]}
MORE_PORTS=$(IFS=,; echo "${PORTS[*]:1}")
cpu_of() { awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

CPU0=$(cpu_of "$SERVER")
: > "$OUT/latencies.tsv"
TIMER=(); [[ -x /usr/bin/time ]] && TIMER=(/usr/bin/time -f "%U %S" -o "$OUT/time.client")
"${TIMER[@]}" "$BIN/mesh-bench" cp-load --port "$PORT" --ca "$OUT/data/ca.pem" --admin-token-file "$OUT/data/admin.token" \
    --server-pid "$SERVER" --more-ports "$MORE_PORTS" --services "$SERVICES" --registrations "$REGISTRATIONS" --registration-rounds "$ROUNDS" \
    --concurrency "$CONCURRENCY" --watchers "$WATCHERS" --watch-rounds "$ROUNDS" --threads "$THREADS" \
    --latencies "$OUT/latencies.tsv" | tee "$OUT/cp-load.out" >&2
CPU1=$(cpu_of "$SERVER")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

CLIENT_CPU=$(awk '/^[0-9.]+ [0-9.]+$/ { s = $1 + $2 } END { printf "%.1f", s }' "$OUT/time.client" 2>/dev/null || echo "?")
python3 - "$OUT" "$REGISTRATIONS" "$WATCHERS" "$LOAD_BEFORE" "$LOAD_AFTER" "$(python3 -c "print($CPU1-$CPU0)")" "$CLIENT_CPU" "$STORE" "$REPLICAS" <<'EOF'
import math, re, statistics, sys
out, registrations, sizes, load0, load1, cpu = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")], sys.argv[4], sys.argv[5], float(sys.argv[6])
store, replicas = sys.argv[8], sys.argv[9]
lines = open(f"{out}/cp-load.out").read().splitlines()
kv = lambda line: dict(re.findall(r"(\w+)=(\S+)", line))
rows = [kv(l) | {"kind": l.split()[0]} for l in lines]
first = lambda key: next(float(r[key]) for r in rows if key in r)
med = lambda xs: statistics.median(xs) if xs else float("nan")
def pct(xs, q):  # nearest rank, as mesh-bench computes its per-round figures
    xs = sorted(xs); return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] if xs else float("nan")
def fmt(xs): return " ".join(f"{x:.1f}" for x in xs)

reg = [float(r["rate"]) for r in rows if r["kind"] == "register"]
dereg = [float(r["rate"]) for r in rows if r["kind"] == "deregister"]
lat = {}
for line in open(f"{out}/latencies.tsv"):
    size, rnd, ms = line.split(); lat.setdefault(int(size), {}).setdefault(int(rnd), []).append(float(ms))
w = lambda size, key: [float(r[key]) for r in rows if r["kind"] == "watch" and int(r["watchers"]) == size]
print(f"store: {store}, {replicas} replica(s); RSS figures are the first replica's")
print(f"{'metric':<58}{'median':>10}   rounds")
print(f"{'registrations/s (%d per round, keep-alive HTTPS)' % registrations:<58}{med(reg):>10.0f}   {fmt(reg)}")
print(f"{'deregistrations/s':<58}{med(dereg):>10.0f}   {fmt(dereg)}")
for size in sizes:
    per = lat.get(size, {})
    pooled = [x for xs in per.values() for x in xs]
    print(f"{'apply -> %d watchers: p50 over watchers (ms)' % size:<58}{med(w(size, 'p50_ms')):>10.1f}   {fmt(w(size, 'p50_ms'))}")
    print(f"{'apply -> %d watchers: p99 over watchers (ms)' % size:<58}{med(w(size, 'p99_ms')):>10.1f}   {fmt(w(size, 'p99_ms'))}")
    print(f"{'apply -> %d watchers: last watcher (ms)' % size:<58}{med(w(size, 'last_ms')):>10.1f}   {fmt(w(size, 'last_ms'))}")
    print(f"{'  pooled over %d rounds x %d watchers: p50 / p99 (ms)' % (len(per), size):<58}{pct(pooled, .5):>10.1f}   p99 {pct(pooled, .99):.1f}")
    print(f"{'  apply request itself (ms)':<58}{med(w(size, 'apply_ms')):>10.1f}   {fmt(w(size, 'apply_ms'))}")
idle, regfirst, regd = first("rss_idle_mib"), first("rss_registered_first_mib"), first("rss_registered_mib")
wrow = next(r for r in rows if "rss_watchers_mib" in r); watch, nw = float(wrow["rss_watchers_mib"]), int(wrow["watchers"])
# The load is spread evenly over the replicas; the RSS is the first replica's, so per-watcher
# figures divide by the watchers that replica holds. Every replica knows every instance.
held = nw / int(replicas)
per_watcher = (watch - regd) / held
print(f"{'RSS idle (MiB)':<58}{idle:>10.1f}")
print(f"{'RSS with %d registered instances, first round (MiB)' % registrations:<58}{regfirst:>10.1f}   {(regfirst - idle) / registrations:.4f} MiB/instance")
print(f"{'RSS after all registration rounds, %d registered (MiB)' % registrations:<58}{regd:>10.1f}")
print(f"{'RSS with %d watchers connected and polling (MiB)' % nw:<58}{watch:>10.1f}   {per_watcher:.4f} MiB/watcher ({held:.0f} on this replica)")
print(f"{'  per sidecar on this replica: its instance + its watcher (MB)':<58}{((regd - idle) / registrations + per_watcher) * 1.048576:>10.4f}")
print(f"CPU over the run: server {cpu:.1f} s, mesh-bench client {sys.argv[7]} s; load average before {load0}, after {load1}")
p99 = pct([x for xs in lat.get(max(sizes), {}).values() for x in xs], .99)
print(f"targets: {max(sizes)} watchers p99 <= 250 ms: {'met' if p99 <= 250 else 'MISSED'} ({p99:.1f}); "
      f"RSS <= 0.2 MB/watcher: {'met' if per_watcher * 1.048576 <= 0.2 else 'MISSED'} ({per_watcher * 1.048576:.3f} MB)")
print(f"raw: {out}/cp-load.out, {out}/latencies.tsv")
EOF
