# Helpers the bench scripts share (sourced after they set ROOT, OUT, RESULTS and HZ).

need() { command -v "$1" >/dev/null || { echo "bench/$(basename "$0"): needs $1 ($2)" >&2; exit 1; }; }

# The sidecar in release (--scratch-path .build-release), unless SKIP_BUILD=1.
build_sidecar_release() {
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        echo "building sidecar (release)…" >&2
        (cd "$ROOT" && nice -n 15 swift build -c release --scratch-path .build-release --product sidecar 2>&1 | tail -3) >&2
    fi
}

# Every process started goes into PIDS; all are stopped when the script ends.
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
cpu_of() { awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }   # all threads
kib_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }                    # VmRSS / VmHWM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() {
    for _ in $(seq 1 300); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done
    echo "nothing listens on port $1 (see $OUT/)" >&2; exit 1
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }   # metric name round value
calc() { python3 -c "print(f'{$1:.4f}')"; }

# Certificates as scripts/demo.sh mints them (P-256, SPIFFE URI SAN, CN = service name), in $PKI.
mint_pki() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=mesh bench root" \
        -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
    for service in web payments; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$service" \
            -keyout "$PKI/$service.key" -out "$PKI/$service.csr" 2>/dev/null
        printf 'subjectAltName=URI:spiffe://mesh.local/service/%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$service" \
            > "$PKI/$service.ext"
        openssl x509 -req -in "$PKI/$service.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 1 \
            -extfile "$PKI/$service.ext" -out "$PKI/$service.pem" 2>/dev/null
        cat "$PKI/$service.pem" "$PKI/$service.key" > "$PKI/$service.combined.pem"   # HAProxy's crt
    done
}
