#!/usr/bin/env bash
# What one small TLS 1.3 record costs in OpenSSL 3's record layer, and what it would cost if we
# protected application records ourselves with OpenSSL's EVP AES-GCM (bench/record-cost.c):
# instructions per 200-byte record under callgrind (machine-independent), four windows:
#   ssl_write  SSL_write of one record, its ciphertext drained from the memory BIO
#   ssl_read   SSL_read of one record fed into the memory BIO
#   evp_seal   nonce, AAD, encrypt, tag with one EVP_CIPHER_CTX keyed once
#   evp_open   nonce, AAD, decrypt, tag check with one EVP_CIPHER_CTX keyed once
#
#   bench/record-cost.sh            # 5000 records per window
#   RECORDS=20000 bench/record-cost.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECORDS=${RECORDS:-5000}
for tool in gcc valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "bench/record-cost.sh: needs $tool (apt-get install gcc valgrind)" >&2; exit 1; }
done
[[ -f /usr/include/openssl/ssl.h ]] || { echo "bench/record-cost.sh: needs libssl-dev" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -Wall -o "$work/record-cost" "$ROOT/bench/record-cost.c" -lssl -lcrypto
"$work/record-cost" 10 > /dev/null   # refuses to run if a record does not round-trip
(cd "$work" && valgrind --tool=callgrind --instr-atstart=no ./record-cost "$RECORDS" > /dev/null 2>&1)
echo "OpenSSL $(openssl version | awk '{print $2}'), TLS_AES_128_GCM_SHA256, 200-byte records, $RECORDS per window"
for dump in $(ls -v "$work"/callgrind.out.*.[0-9]*); do
    name=$(sed -n 's/^desc: Trigger: Client Request: //p' "$dump")
    total=$(awk '/^totals:/ { print $2 }' "$dump")
    printf '%-10s %8.0f instructions per record\n' "$name" "$(echo "$total / $RECORDS" | bc -l)"
done
