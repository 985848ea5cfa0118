#!/usr/bin/env bash
# The hot path's regression guard: instructions (valgrind callgrind's Ir) the two sidecars of
# the pair path execute per request, for a fixed request mix, compared with the figure committed
# in bench/instructions-baseline.txt. Instruction counts do not depend on the machine's load, so
# this is stable where timing benchmarks are not (bench/sidecar.sh measures time and CPU).
#
#   client (python, one keep-alive connection) → sidecar web (outbound, plain HTTP/1.1)
#     ══mTLS══▶ sidecar payments (inbound) → app (python, 200 + 100 B)
#
# Both sidecars run under `valgrind --tool=callgrind` with the demo's Route (timeout, retries;
# timeouts long enough for valgrind's pace) and AuthorizationPolicy, and their defaults (access
# log on). Instrumentation starts after WARMUP requests (TLS handshake done, pools and caches
# filled); then REQUESTS requests of the mix (per 4: GET /pay, GET /pay/orders?q=… with 3 more
# headers, POST /pay with a 1 KiB body, HEAD /pay); then both are dumped. The figure: Ir of
# both sidecars / REQUESTS (the median of RUNS runs). One worker each: with one per core, the
# measured client's connection landed on the other event loop than the warm-up's, whose pool
# then made a new mTLS connection inside the window (a handshake, ~6 % of the figure).
#
# valgrind 3.19 and Swift 6.3: valgrind gets a copy of the binary with its debug info stripped
# (it cannot read Swift 6.3's DWARF), and a preloaded `sigsuspend` that hands the kernel a
# writable copy of its mask (valgrind 3.19 writes into the mask, and libdispatch's
# dispatchMain, which ran the sidecar's async main before main.swift, passes a constant one:
# valgrind crashed without it).
#
#   bench/instructions.sh            # measure and check: fails when >10 % above the baseline
#   bench/instructions.sh --update   # measure (median of 3) and write the baseline (commit it)
#   bench/instructions.sh --measure  # measure and print only
#   BIN=.build-release/release/sidecar bench/instructions.sh --measure   # another build
#
#   RUNS=3 bench/instructions.sh --measure                              # the spread of 3 runs
#   PROTOCOL=h2 BIN=.build-release/release/sidecar bench/instructions.sh --measure   # the HTTP/2 path
#   PROTOCOL=gateway BIN=.build-release/release/sidecar bench/instructions.sh --measure   # the edge path
#   ACCESS_LOG=off PROTOCOL=gateway BIN=… bench/instructions.sh --measure              # … its access log off
#
# PROTOCOL=h2: the HTTP/2 pair path of bench/http2.sh instead (h2load, h2c with prior knowledge,
# one connection, 10 streams at a time, GET /pay and GET /pay/orders?q=… in turn → web ══mTLS h2══▶
# payments → nginx speaking h2c); its figure is kept as `<build>-h2` in the baseline file. Not in
# CI (a debug build under valgrind takes minutes on this path). Also needs h2load and nginx.
#
# PROTOCOL=gateway: the edge path of bench/gateway.sh instead: the same client and mix over HTTPS
# (TLS 1.3, keep-alive, Host api.example.com) → a gateway (`gateway.https`, the bench's
# GatewayRoute: pathPrefix /pay → payments) ══mTLS══▶ payments (as above) → app. The figure is
# the gateway's Ir per request alone (the sidecar behind is printed beside it), kept as
# `<build>-gateway` in the baseline file; ACCESS_LOG=off runs the gateway with `--access-log off`
# (as bench/gateway.sh does), kept as `<build>-gateway-nolog`. Not in CI.
#
# Uses the debug build CI already has (.build/debug/sidecar; build it first); the baseline file
# has one line per build (debug, release). .ci/run checks the debug one after the test suite.
# Needs valgrind, objcopy (binutils), a C compiler (cc or clang), openssl, python3, curl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=check
case "${1:-}" in
    "") ;;
    --update) MODE=update ;;
    --measure) MODE=measure ;;
    *) echo "usage: bench/instructions.sh [--update|--measure]" >&2; exit 2 ;;
esac
BIN=${BIN:-$ROOT/.build/debug/sidecar}
PROTOCOL=${PROTOCOL:-http1}
[[ $PROTOCOL == http1 || $PROTOCOL == h2 || $PROTOCOL == gateway ]] || { echo "bench/instructions.sh: PROTOCOL is http1, h2 or gateway" >&2; exit 2; }
ACCESS_LOG=${ACCESS_LOG:-on}   # the gateway's (PROTOCOL=gateway)
[[ $ACCESS_LOG == on || $ACCESS_LOG == off ]] || { echo "bench/instructions.sh: ACCESS_LOG is on or off" >&2; exit 2; }
HOST=api.example.com           # the gateway's host name (PROTOCOL=gateway)
BASELINE=${BASELINE:-$ROOT/bench/instructions-baseline.txt}
WARMUP=${WARMUP:-200}
REQUESTS=${REQUESTS:-1000}
TOLERANCE=${TOLERANCE:-10}   # percent
RUNS=${RUNS:-$([[ $MODE == update ]] && echo 3 || echo 1)}   # the median of RUNS runs (--update: of 3), and their spread
OUT=$(mktemp -d /tmp/mesh-instructions.XXXXXX)
PKI=$OUT/pki
RESULTS=$OUT/results.tsv
HZ=$(getconf CLK_TCK)

# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
need valgrind "apt-get install valgrind"; need callgrind_control "apt-get install valgrind"
need objcopy "apt-get install binutils"; need openssl "apt-get install openssl"; need python3 "apt-get install python3"
need curl "apt-get install curl"
if [[ $PROTOCOL == h2 ]]; then
    need h2load "apt-get install nghttp2-client"; need nginx "apt-get install nginx"; need ss "apt-get install iproute2"
fi
CC=${CC:-$(command -v cc || command -v clang || true)}   # Swift's toolchain has clang
[[ -n "$CC" ]] || { echo "bench/instructions.sh: needs a C compiler (cc or clang)" >&2; exit 1; }
[[ -x "$BIN" ]] || { echo "bench/instructions.sh: no sidecar at $BIN (swift build --product sidecar first)" >&2; exit 1; }
trap 'cleanup; rm -rf "$OUT"' EXIT INT TERM

mkdir -p "$PKI"
mint_pki
if [[ $PROTOCOL == gateway ]]; then   # the gateway's certificate for outside clients, from the same CA
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$HOST" \
        -keyout "$PKI/$HOST.key" -out "$PKI/$HOST.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$HOST" > "$PKI/$HOST.ext"
    openssl x509 -req -in "$PKI/$HOST.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 1 \
        -extfile "$PKI/$HOST.ext" -out "$PKI/$HOST.pem" 2>/dev/null
fi
objcopy --strip-debug "$BIN" "$OUT/sidecar"
cat > "$OUT/sigsuspend.c" <<'C'
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
C
"$CC" -shared -fPIC -O2 -o "$OUT/sigsuspend.so" "$OUT/sigsuspend.c"

APP_PORT=$(free_port) A_LISTEN=$(free_port) B_LISTEN=$(free_port) A_ADMIN=$(free_port) B_ADMIN=$(free_port)
cat > "$OUT/app.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b"x" * 99 + b"\n"
HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY)
class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def answer(self, body=True):
        length = int(self.headers.get("content-length") or 0)
        if length: self.rfile.read(length)
        self.wfile.write(HEAD + BODY if body else HEAD)  # one write: no Nagle/delayed-ACK stall
    def do_GET(self): self.answer()
    def do_POST(self): self.answer()
    def do_HEAD(self): self.answer(body=False)
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
PY
cat > "$OUT/client.py" <<'PY'
import http.client, socket, ssl, sys
# client.py PORT COUNT[,COUNT…] [HOST CA]: plain HTTP/1.1, or HTTPS to HOST (verified against CA)
# with HOST as Host; between two batches of COUNT requests on the same connection it prints
# `ready` and waits for a line on stdin.
port, counts = int(sys.argv[1]), [int(count) for count in sys.argv[2].split(",")]
host, ca = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("payments", None)
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
connection.connect()
connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if ca:
    connection.sock = ssl.create_default_context(cafile=ca).wrap_socket(connection.sock, server_hostname=host)
body = b"b" * 1024
mix = [
    ("GET", "/pay", None, {}),
    ("GET", "/pay/orders?q=12345&page=2", None, {"accept": "application/json", "user-agent": "bench/1", "x-tenant": "t1"}),
    ("POST", "/pay", body, {"content-type": "application/octet-stream"}),
    ("HEAD", "/pay", None, {}),
]
for batch, count in enumerate(counts):
    if batch:
        print("ready", flush=True)
        sys.stdin.readline()
    for index in range(count):
        method, path, payload, headers = mix[index % len(mix)]
        connection.request(method, path, body=payload, headers={"host": host, **headers})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"request {index}: {method} {path} answered {response.status}")
PY

if [[ $PROTOCOL == gateway ]]; then   # web is the gateway (its mesh identity is web's)
    gateway_config web "$A_LISTEN" "$A_ADMIN" "$B_LISTEN" > "$OUT/web.yaml"
else cat > "$OUT/web.yaml" <<EOF
service: web
inbound:  { listen: 127.0.0.1:$(free_port), app: 127.0.0.1:$(free_port) }
outbound: { listen: 127.0.0.1:$A_LISTEN }
admin:    { listen: 127.0.0.1:$A_ADMIN }
tls:      { cert: $PKI/web.pem, key: $PKI/web.key, trustBundle: $PKI/ca.pem }
resources:
  - { kind: Instance, service: payments, address: 127.0.0.1, port: $B_LISTEN, labels: { version: v1 } }
  - kind: Route
    service: payments
    rules:
      - match: { pathPrefix: /pay }
        timeout: 60s
        retries: { attempts: 3, perTryTimeout: 30s }
        backends: [ { subset: { version: v1 }, weight: 100 } ]
EOF
fi
cat > "$OUT/payments.yaml" <<EOF
service: payments
inbound:  { listen: 127.0.0.1:$B_LISTEN, app: 127.0.0.1:$APP_PORT$([[ $PROTOCOL == h2 ]] && echo ", protocol: http2") }
outbound: { listen: 127.0.0.1:$(free_port) }
admin:    { listen: 127.0.0.1:$B_ADMIN }
tls:      { cert: $PKI/payments.pem, key: $PKI/payments.key, trustBundle: $PKI/ca.pem }
resources:
  - kind: AuthorizationPolicy
    service: payments
    default: deny
    allow: [ { from: [ web ], methods: [ GET, POST, HEAD ], pathPrefix: /pay } ]
EOF

if [[ $PROTOCOL == h2 ]]; then
    start_h2c_app "$APP_PORT" "$OUT/app"
else
    python3 "$OUT/app.py" "$APP_PORT" & PIDS+=($!)
fi

# COUNT requests of the mix to web's outbound port (PROTOCOL=gateway: see measure_once).
requests() {
    if [[ $PROTOCOL == http1 ]]; then
        python3 "$OUT/client.py" "$A_LISTEN" "$1"
        return
    fi
    h2load -n "$1" -c1 -m10 -H ":authority: payments" \
        "http://127.0.0.1:$A_LISTEN/pay" "http://127.0.0.1:$A_LISTEN/pay/orders?q=12345&page=2" > "$OUT/h2load.log" 2>&1
    grep -q " $1 succeeded" "$OUT/h2load.log" || { echo "h2load: not all $1 requests succeeded:" >&2; cat "$OUT/h2load.log" >&2; exit 1; }
}

# One measurement: both sidecars started under callgrind with instrumentation off (startup and
# warm-up run at valgrind's plain pace), switched on and zeroed after the warm-up, dumped after
# the measured requests. Sets `figure` to Ir per request (not in a subshell: the processes it
# starts stay in PIDS, so a failed run leaves none behind): of both sidecars, or (gateway) of
# the gateway alone. KEEP_DUMPS=DIR keeps the callgrind dumps there (for callgrind_annotate);
# DUMP_INSTR=yes records per-instruction costs in them (scripts/symbol-order.sh reads which code ran).
measure_once() {
    local run=$1 side admin pid dump ir total=0 started options client
    local -A pid_of ir_of
    for side in web payments; do
        options=(); [[ $PROTOCOL == gateway && $side == web ]] && options=(--access-log "$ACCESS_LOG")
        LD_PRELOAD="$OUT/sigsuspend.so" valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$OUT/$side.$run.callgrind" --dump-instr="${DUMP_INSTR:-no}" --dump-line=no \
            "$OUT/sidecar" --config "$OUT/$side.yaml" --workers 1 "${options[@]}" > "$OUT/$side.$run.log" 2>&1 &
        pid_of[$side]=$!; PIDS+=($!)
    done
    for admin in "$A_ADMIN" "$B_ADMIN"; do
        for _ in $(seq 1 1200); do curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" && break; sleep 0.1; done
        curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" || { echo "a sidecar did not start:" >&2; cat "$OUT"/*.log >&2; exit 1; }
    done
    if [[ $PROTOCOL == gateway ]]; then
        # Warm-up and measured requests on one HTTPS connection: its TLS handshake (and the
        # channel's setup) is not counted, as a keep-alive client (wrk) does not pay it per request.
        coproc CLIENT { python3 "$OUT/client.py" "$A_LISTEN" "$WARMUP,$REQUESTS" "$HOST" "$PKI/ca.pem"; }
        client=$CLIENT_PID; PIDS+=("$client")
        read -r _ <&"${CLIENT[0]}"
    else
        requests "$WARMUP"
    fi
    for side in web payments; do
        callgrind_control -i on "${pid_of[$side]}" > /dev/null 2>&1
        callgrind_control -z "${pid_of[$side]}" > /dev/null 2>&1
    done
    started=$(now)
    if [[ $PROTOCOL == gateway ]]; then
        echo go >&"${CLIENT[1]}"
        wait "$client"
    else
        requests "$REQUESTS"
    fi
    for side in web payments; do
        callgrind_control -d "${pid_of[$side]}" > /dev/null 2>&1
        dump=$(ls -t "$OUT/$side.$run.callgrind".* | head -1)
        ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
        total=$((total + ir)); ir_of[$side]=$ir
        [[ -z "${KEEP_DUMPS:-}" ]] || { mkdir -p "$KEEP_DUMPS"; cp "$dump" "$KEEP_DUMPS/"; }
        kill "${pid_of[$side]}" 2>/dev/null || true
    done
    wait "${pid_of[web]}" "${pid_of[payments]}" 2>/dev/null || true
    if [[ $PROTOCOL == gateway ]]; then
        figure=$((ir_of[web] / REQUESTS))
        echo "run $run: gateway $figure Ir/request, payments behind it $((ir_of[payments] / REQUESTS))" \
             "($REQUESTS requests in $(calc "$(now) - $started") s)" >&2
        return
    fi
    figure=$((total / REQUESTS))
    echo "run $run: $figure Ir/request ($REQUESTS requests in $(calc "$(now) - $started") s)" >&2
}

BUILD=$(basename "$(dirname "$BIN")")   # debug or release: each has its own baseline line
[[ $PROTOCOL == h2 ]] && BUILD=$BUILD-h2
if [[ $PROTOCOL == gateway ]]; then BUILD=$BUILD-gateway; [[ $ACCESS_LOG == on ]] || BUILD=$BUILD-nolog; fi
figures=()
for run in $(seq 1 "$RUNS"); do measure_once "$run"; figures+=("$figure"); done
per_request=$(printf '%s\n' "${figures[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
if ((RUNS > 1)); then
    low=$(printf '%s\n' "${figures[@]}" | sort -n | head -1); high=$(printf '%s\n' "${figures[@]}" | sort -n | tail -1)
    echo "runs: ${figures[*]}; spread $(calc "100 * ($high - $low) / $per_request") % of the median"
fi
echo "instructions per request ($([[ $PROTOCOL == gateway ]] && echo "the gateway" || echo "both sidecars"), $BUILD build, median of $RUNS): $per_request"

case $MODE in
    measure) ;;
    update)
        others=$(grep -v -e '^#' -e "^$BUILD " "$BASELINE" 2>/dev/null || true)
        {
            echo "# bench/instructions.sh: callgrind Ir per request, both sidecars of the pair path, the mix in"
            echo "# bench/instructions.sh, per build; the check fails above +$TOLERANCE %. Update: bench/instructions.sh --update"
            printf '%s\n' "$BUILD $per_request" $'\n'"$others" | grep . | sort
        } > "$BASELINE.new"
        mv "$BASELINE.new" "$BASELINE"
        echo "wrote $BASELINE ($BUILD $per_request)" ;;
    check)
        baseline=$(awk -v build="$BUILD" '$1 == build { print $2 }' "$BASELINE" 2>/dev/null)
        if [[ -z "$baseline" ]]; then
            echo "FAIL: no $BUILD figure in $BASELINE (bench/instructions.sh --update writes it)" >&2; exit 1
        fi
        limit=$((baseline * (100 + TOLERANCE) / 100))
        echo "baseline $baseline, limit $limit (+$TOLERANCE %): $(calc "$per_request / $baseline") of the baseline"
        if ((per_request > limit)); then
            echo "FAIL: the pair path costs $(calc "100 * ($per_request / $baseline - 1)") % more instructions per request" \
                 "than $BASELINE; if that is intended, run bench/instructions.sh --update and commit it" >&2
            exit 1
        fi
        if ((per_request * 100 < baseline * (100 - TOLERANCE))); then
            echo "note: $(calc "100 * (1 - $per_request / $baseline)") % fewer instructions than the baseline: bench/instructions.sh --update keeps the gain"
        fi ;;
esac
