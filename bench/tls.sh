#!/usr/bin/env bash
# Our TLS layer (TLSHandler over the system OpenSSL 3, in SwiftNIO) against OpenSSL's own tools,
# on loopback, interleaved: handshakes/s (full and resumed) and bulk MB/s over one connection.
# TLS 1.3, P-256 certificates minted by `mesh-bench mint`, mutual authentication on both sides,
# one server thread each. Prints medians of ROUNDS rounds and ratios ours/OpenSSL.
# See bench/README.md for what is compared with what.
#
#   bench/tls.sh                      # build, mint, run 3 rounds
#   ROUNDS=5 SECONDS_PER_RUN=5 BULK_BYTES=$((1<<30)) SKIP_BUILD=1 bench/tls.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
BULK_BYTES=${BULK_BYTES:-1073741824}
CHUNK=${CHUNK:-65536}
SUITE=TLS_AES_256_GCM_SHA384
OUT=${OUT:-$ROOT/bench/out/tls-$(date -u +%Y%m%dT%H%M%S)}
BIN=$ROOT/.build-release/release/mesh-bench
PKI=$OUT/pki
RESULTS=$OUT/results.tsv
HZ=$(getconf CLK_TCK)

for tool in openssl socat python3 /usr/bin/time ss; do
    command -v "$tool" >/dev/null || { echo "bench/tls.sh: needs $tool (apt-get install ${tool##*/})" >&2; exit 1; }
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "building mesh-bench (release)…" >&2
    (cd "$ROOT" && nice -n 15 ./scripts/build-release.sh --product mesh-bench 2>&1 | tail -3) >&2
fi
mkdir -p "$OUT/www"
: > "$OUT/www/ping"        # s_server -WWW serves this empty file: one small request/response
: > "$RESULTS"
"$BIN" mint --dir "$PKI" >/dev/null

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

now() { date +%s.%N; }
# user+system CPU seconds of a live process
cpu_of() { awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# user+system seconds from a `/usr/bin/time -f "%U %S"` file
cpu_file() { awk '/^[0-9.]+ [0-9.]+$/ { s = $1 + $2 } END { printf "%.3f", s }' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() {  # port — a bounded poll, without connecting (a probe would use up an accept)
    for _ in $(seq 1 200); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2; exit 1
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }  # metric impl round value
calc() { python3 -c "print(f'{$1:.4f}')"; }

# --- servers for the handshake runs (kept for the whole run; CPU read from /proc) ---
"$BIN" tls-server --dir "$PKI" --port 0 > "$OUT/ours-server.out" 2> "$OUT/ours-server.err" &
OURS_PID=$!; PIDS+=("$OURS_PID")
for _ in $(seq 1 200); do [[ -s "$OUT/ours-server.out" ]] && break; sleep 0.05; done
OURS_PORT=$(head -1 "$OUT/ours-server.out")
wait_listening "$OURS_PORT"

SSL_PORT=$(free_port)
(cd "$OUT/www" && exec openssl s_server -accept "127.0.0.1:$SSL_PORT" -cert "$PKI/server.pem" -key "$PKI/server.key" \
    -CAfile "$PKI/ca.pem" -Verify 2 -tls1_3 -ciphersuites "$SUITE" -WWW -quiet) \
    > "$OUT/s_server.out" 2>&1 &
SSL_PID=$!; PIDS+=("$SSL_PID")
wait_listening "$SSL_PORT"

# What our server negotiates by default (the OpenSSL side is pinned to it).
OURS_SUITE=$(openssl s_client -connect "127.0.0.1:$OURS_PORT" -cert "$PKI/client.pem" -key "$PKI/client.key" \
    -CAfile "$PKI/ca.pem" -tls1_3 -brief < /dev/null 2>&1 | awk -F': ' '/Ciphersuite/ { print $2 }')
echo "our server negotiates: ${OURS_SUITE:-?} (OpenSSL side pinned to $SUITE)" >&2

handshakes_ours() {  # round full|resumed
    local flag=""; [[ $2 == resumed ]] && flag=--resume
    local c0 t0 t1 c1 out
    c0=$(cpu_of "$OURS_PID"); t0=$(now)
    out=$(/usr/bin/time -f "%U %S" -o "$OUT/time.client" "$BIN" tls-handshakes --dir "$PKI" --port "$OURS_PORT" \
        --seconds "$SECONDS_PER_RUN" $flag)
    t1=$(now); c1=$(cpu_of "$OURS_PID")
    echo "$out" >> "$OUT/ours-handshakes.log"
    local n r; n=$(sed -E 's/.*connections=([0-9]+).*/\1/' <<< "$out"); r=$(sed -E 's/.*resumed=([0-9]+).*/\1/' <<< "$out")
    record "hs_$2_per_s" ours "$1" "$(calc "$n / ($t1 - $t0)")"
    record "hs_$2_resumed_share" ours "$1" "$(calc "$r / $n")"
    record "hs_$2_server_cpu_ms" ours "$1" "$(calc "1000 * ($c1 - $c0) / $n")"
    record "hs_$2_client_cpu_ms" ours "$1" "$(calc "1000 * $(cpu_file "$OUT/time.client") / $n")"
}

handshakes_openssl() {  # round full|resumed
    local flag=-new; [[ $2 == resumed ]] && flag=-reuse
    local c0 t0 t1 c1
    c0=$(cpu_of "$SSL_PID"); t0=$(now)
    /usr/bin/time -f "%U %S" -o "$OUT/time.client" openssl s_time -connect "127.0.0.1:$SSL_PORT" $flag \
        -time "$SECONDS_PER_RUN" -cert "$PKI/client.pem" -key "$PKI/client.key" -CAfile "$PKI/ca.pem" \
        -tls1_3 -ciphersuites "$SUITE" -www /ping > "$OUT/s_time.out" 2>&1
    t1=$(now); c1=$(cpu_of "$SSL_PID")
    cat "$OUT/s_time.out" >> "$OUT/s_time.log"
    local n r
    n=$(sed -nE 's/^([0-9]+) connections in [0-9]+ real seconds.*/\1/p' "$OUT/s_time.out")
    r=$(grep -E '^[*r]+$' "$OUT/s_time.out" | tr -cd r | wc -c)
    record "hs_$2_per_s" openssl "$1" "$(calc "$n / ($t1 - $t0)")"
    record "hs_$2_resumed_share" openssl "$1" "$(calc "$r / $n")"
    record "hs_$2_server_cpu_ms" openssl "$1" "$(calc "1000 * ($c1 - $c0) / $n")"
    record "hs_$2_client_cpu_ms" openssl "$1" "$(calc "1000 * $(cpu_file "$OUT/time.client") / $n")"
}

bulk_ours() {  # round
    local c0 t0 t1 c1 out
    c0=$(cpu_of "$OURS_PID"); t0=$(now)
    out=$(/usr/bin/time -f "%U %S" -o "$OUT/time.client" "$BIN" tls-bulk --dir "$PKI" --port "$OURS_PORT" \
        --bytes "$BULK_BYTES" --chunk "$CHUNK")
    t1=$(now); c1=$(cpu_of "$OURS_PID")
    echo "$out" >> "$OUT/ours-bulk.log"
    bulk_record ours "$1" "$t0" "$t1" "$(calc "$c1 - $c0")" "$(cpu_file "$OUT/time.client")"
}

bulk_openssl() {  # round — socat on both ends: /dev/zero → TLS → /dev/null, 64 KiB reads
    local port t0 t1 tls="cert=$PKI/server.pem,key=$PKI/server.key,cafile=$PKI/ca.pem,verify=1,openssl-min-proto-version=TLS1.3"
    port=$(free_port)
    /usr/bin/time -f "%U %S" -o "$OUT/time.server" socat -d -d -u -b "$CHUNK" \
        "OPENSSL-LISTEN:$port,bind=127.0.0.1,reuseaddr,$tls" OPEN:/dev/null,wronly 2> "$OUT/socat-server.err" &
    local server=$!
    wait_listening "$port"
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$OUT/time.client" socat -d -d -u -b "$CHUNK" \
        "OPEN:/dev/zero,readbytes=$BULK_BYTES" \
        "OPENSSL:127.0.0.1:$port,cert=$PKI/client.pem,key=$PKI/client.key,cafile=$PKI/ca.pem,verify=1,commonname=localhost,openssl-min-proto-version=TLS1.3" \
        2> "$OUT/socat-client.err"
    wait "$server"; t1=$(now)
    grep -q "using $SUITE" "$OUT/socat-server.err" || { echo "socat did not negotiate $SUITE:" >&2; cat "$OUT/socat-server.err" >&2; exit 1; }
    bulk_record openssl "$1" "$t0" "$t1" "$(cpu_file "$OUT/time.server")" "$(cpu_file "$OUT/time.client")"
}

bulk_record() {  # impl round t0 t1 server_cpu client_cpu
    local busiest; busiest=$(calc "max($5, $6)")
    record bulk_MBps "$1" "$2" "$(calc "$BULK_BYTES / 1e6 / ($4 - $3)")"
    record bulk_server_cpu_s_per_GiB "$1" "$2" "$(calc "$5 * 1073741824 / $BULK_BYTES")"
    record bulk_client_cpu_s_per_GiB "$1" "$2" "$(calc "$6 * 1073741824 / $BULK_BYTES")"
    record bulk_MB_per_busiest_cpu_s "$1" "$2" "$(calc "$BULK_BYTES / 1e6 / $busiest")"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS…" >&2
    # Alternate who goes first, so neither side always meets the same neighbour noise.
    if (( round % 2 )); then order="ours openssl"; else order="openssl ours"; fi
    for kind in full resumed; do for impl in $order; do "handshakes_$impl" "$round" "$kind"; done; done
    for impl in $order; do "bulk_$impl" "$round"; done
done

# Reference, not a contender: AES-256-GCM alone on one core (16 KiB records, no network).
FLOOR_KBPS=$(openssl speed -evp aes-256-gcm -bytes 16384 -seconds 2 2>/dev/null | awk '/^AES-256-GCM/ { sub(/k$/, "", $2); print $2 }')

python3 - "$RESULTS" "$ROUNDS" "$SECONDS_PER_RUN" "$BULK_BYTES" "${FLOOR_KBPS:-0}" <<'PY'
import collections, statistics, sys
path, rounds, seconds, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
floor_kbps = float(sys.argv[5])
values = collections.defaultdict(list)
for line in open(path):
    metric, impl, _, value = line.rstrip("\n").split("\t")
    values[(metric, impl)].append(float(value))
rows = [
    ("hs_full_per_s", "full handshakes/s (+1 round trip)", True),
    ("hs_full_server_cpu_ms", "  server CPU ms/handshake", False),
    ("hs_full_client_cpu_ms", "  client CPU ms/handshake", False),
    ("hs_full_resumed_share", "  share resumed", None),
    ("hs_resumed_per_s", "resumed handshakes/s (+1 round trip)", True),
    ("hs_resumed_server_cpu_ms", "  server CPU ms/handshake", False),
    ("hs_resumed_client_cpu_ms", "  client CPU ms/handshake", False),
    ("hs_resumed_resumed_share", "  share resumed", None),
    ("bulk_MBps", f"bulk MB/s, 1 connection, {size / 2**30:g} GiB (wall)", True),
    ("bulk_server_cpu_s_per_GiB", "  server (receiver) CPU s/GiB", False),
    ("bulk_client_cpu_s_per_GiB", "  client (sender) CPU s/GiB", False),
    ("bulk_MB_per_busiest_cpu_s", "  MB per CPU-s of the busier side", True),
]
print(f"\nTLS 1.3, P-256, mutual auth, TLS_AES_256_GCM_SHA384, loopback; medians of {rounds} interleaved rounds "
      f"({seconds} s per handshake run); ratio = ours/OpenSSL "
      f"(rates: higher is better; CPU: lower is better)\n")
print(f"{'metric':44} {'ours':>10} {'OpenSSL':>10} {'ratio':>7}   rounds (ours | OpenSSL)")
for metric, label, higher_better in rows:
    ours, theirs = values.get((metric, "ours"), []), values.get((metric, "openssl"), [])
    if not ours or not theirs:
        continue
    a, b = statistics.median(ours), statistics.median(theirs)
    ratio = "" if higher_better is None else (f"{a / b:.2f}" if b else "-")
    fmt = lambda xs: " ".join(f"{x:g}" for x in xs)
    print(f"{label:44} {a:10.4g} {b:10.4g} {ratio:>7}   {fmt(ours)} | {fmt(theirs)}")
if floor_kbps:
    print(f"\nreference: AES-256-GCM alone (openssl speed -evp, 16 KiB) {floor_kbps / 1000:.0f} MB/s on one core"
          f" = {2**30 / (floor_kbps * 1000):.2f} CPU-s/GiB, the crypto floor under each side's CPU row")
PY
echo "raw results: $RESULTS" >&2
