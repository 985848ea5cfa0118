# Helpers the bench scripts share (sourced after they set ROOT, OUT, RESULTS and HZ).

need() { command -v "$1" >/dev/null || { echo "bench/$(basename "$0"): needs $1 ($2)" >&2; exit 1; }; }

# The sidecar in release (--scratch-path .build-release), unless SKIP_BUILD=1.
build_sidecar_release() {
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        echo "building sidecar (release)…" >&2
        (cd "$ROOT" && nice -n 15 ./scripts/build-release.sh --product sidecar 2>&1 | tail -3) >&2
    fi
}

# Every process started goes into PIDS; all are stopped when the script ends.
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
cpu_of() { awk -v hz="$HZ" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }   # all threads
sys_cpu_of() { awk -v hz="$HZ" '{ printf "%.3f", $15 / hz }' "/proc/$1/stat"; }       # of which in the kernel
kib_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }                    # VmRSS / VmHWM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() {
    for _ in $(seq 1 300); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done
    echo "nothing listens on port $1 (see $OUT/)" >&2; exit 1
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }   # metric name round value
calc() { python3 -c "print(f'{$1:.4f}')"; }
# Busy CPU-seconds of the whole machine, all cores (user, nice, system, irq, softirq, steal).
machine_busy() { awk -v hz="$HZ" '$1 == "cpu" { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }

# An h2load --log-file ($1, one line per request: start, status, µs) from a run of $2 seconds as
# "metric value" lines: p50_us, p99_us, max_us, achieved_rps, lat_errors (status other than 200).
h2load_log_stats() {
    python3 - "$1" "$2" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
lat = sorted(int(r[2]) for r in rows)
bad = sum(1 for r in rows if r[1] != "200")
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
print("p50_us", q(0.50)); print("p99_us", q(0.99)); print("max_us", lat[-1] if lat else 0)
print("achieved_rps", round(len(rows) / float(sys.argv[2]), 1)); print("lat_errors", bad)
PY
}

# The edge benchmarks' gateway (bench/gateway.sh; bench/instructions.sh PROTOCOL=gateway) as YAML
# on stdout: service $1 with its mesh certificate $PKI/$1.pem, an HTTPS listener on 127.0.0.1:$2
# with $PKI/$HOST.pem, admin on $3, and the GatewayRoute for $HOST to payments at 127.0.0.1:$4
# (`/pay`, and `/cached` with a response cache).
gateway_config() {
    cat <<EOF
service: $1
gateway: { https: { listen: 127.0.0.1:$2, certificates: [ { cert: $PKI/$HOST.pem, key: $PKI/$HOST.key } ] } }
admin:   { listen: 127.0.0.1:$3 }
tls:     { cert: $PKI/$1.pem, key: $PKI/$1.key, trustBundle: $PKI/ca.pem }
resources:
  - { kind: Instance, service: payments, address: 127.0.0.1, port: $4 }
  - kind: GatewayRoute
    name: api
    hosts: [ $HOST ]
    rules:
      - { match: { pathPrefix: /pay }, service: payments }
      - { match: { pathPrefix: /cached }, service: payments, cache: { ttl: 1h, maxBytes: 16Mi } }
EOF
}

# Certificates as scripts/demo.sh mints them (P-256, SPIFFE URI SAN, CN = service name), in $PKI.
# The app of the HTTP/2 pair path: nginx speaking h2c with prior knowledge on 127.0.0.1:$1,
# answering 200 + 100 B; its files in $2, its pid in PIDS.
start_h2c_app() {
    local port=$1 dir=$2 body; body=$(printf 'x%.0s' $(seq 1 99)); mkdir -p "$dir"
    cat > "$dir/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 100000000; keepalive_timeout 3600s; http2_max_requests 100000000;
    http2_max_concurrent_streams 1000;
    server { listen 127.0.0.1:$port http2; location / { default_type text/plain; return 200 "$body\n"; } }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" > "$dir/out.log" 2>&1 & PIDS+=($!)
    wait_listening "$port"
}

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

# An Envoy pair doing what our pair does (outbound → mTLS, client certs, SPIFFE SAN checks →
# inbound → the app on $APP_PORT), one worker each; $1: http1, or http2 on both hops (100 streams
# per upstream connection). Sets PORT_OF[envoy], A_PID[envoy], B_PID[envoy]; needs $ENVOY, $OUT, $PKI.
start_envoy_pair() {
    local protocol=$1
    local d="$OUT/envoy" a b; mkdir -p "$d"; a=$(free_port); b=$(free_port)
    local hcm='"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager'
    local router='{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }'
    local tlsp='tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3 }'
    local codec=HTTP1 codec_options="" alpn="http/1.1" route_timeout="" h2=""
    if [[ $protocol == http2 ]]; then
        codec=HTTP2 codec_options="http2_protocol_options: { max_concurrent_streams: 1000 }" alpn="h2" route_timeout=", timeout: 2s"
        h2='typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 100 } } } }'
    fi
    cat > "$d/a.yaml" <<EOF
static_resources:
  listeners:
  - name: outbound
    address: { socket_address: { address: 127.0.0.1, port_value: $a } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          $hcm
          stat_prefix: outbound
          codec_type: $codec
          $codec_options
          route_config:
            virtual_hosts: [ { name: payments, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: payments$route_timeout } } ] } ]
          http_filters: [ $router ]
  clusters:
  - name: payments
    type: STATIC
    connect_timeout: 5s
    $h2
    load_assignment: { cluster_name: payments, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $b } } } } ] } ] }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: payments
        common_tls_context:
          $tlsp
          alpn_protocols: [ "$alpn" ]
          tls_certificates: [ { certificate_chain: { filename: $PKI/web.pem }, private_key: { filename: $PKI/web.key } } ]
          validation_context:
            trusted_ca: { filename: $PKI/ca.pem }
            match_typed_subject_alt_names: [ { san_type: URI, matcher: { exact: "spiffe://mesh.local/service/payments" } } ]
EOF
    cat > "$d/b.yaml" <<EOF
static_resources:
  listeners:
  - name: inbound
    address: { socket_address: { address: 127.0.0.1, port_value: $b } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            $tlsp
            alpn_protocols: [ "$alpn" ]
            tls_certificates: [ { certificate_chain: { filename: $PKI/payments.pem }, private_key: { filename: $PKI/payments.key } } ]
            validation_context:
              trusted_ca: { filename: $PKI/ca.pem }
              match_typed_subject_alt_names: [ { san_type: URI, matcher: { exact: "spiffe://mesh.local/service/web" } } ]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          $hcm
          stat_prefix: inbound
          codec_type: $codec
          $codec_options
          route_config:
            virtual_hosts: [ { name: app, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: app } } ] } ]
          http_filters: [ $router ]
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 5s
    $h2
    load_assignment: { cluster_name: app, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $APP_PORT } } } } ] } ] }
EOF
    "$ENVOY" -c "$d/b.yaml" --concurrency 1 --disable-hot-restart --log-level warn > "$d/b.log" 2>&1 & B_PID[envoy]=$!; PIDS+=($!)
    "$ENVOY" -c "$d/a.yaml" --concurrency 1 --disable-hot-restart --log-level warn > "$d/a.log" 2>&1 & A_PID[envoy]=$!; PIDS+=($!)
    wait_listening "$b"; wait_listening "$a"
    PORT_OF[envoy]=$a
}
