#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every mesh-fuzz target into fuzz/seeds/<target>/.

The committed corpora (fuzz/corpus/<target>/) are these seeds plus what libFuzzer found,
minimized with -merge=1; rerun this only to add seeds. Needs python3-yaml and openssl.
"""
import json, os, subprocess, sys, tempfile
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

def write(target, name, data):
    directory = os.path.join(HERE, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

RESOURCES = """\
kind: Route
service: payments
rules:
  - match: { pathPrefix: /pay, method: POST, headers: { x-canary: "1" } }
    backends: [ { subset: { version: v1 }, weight: 90 }, { subset: { version: v2 }, weight: 10 } ]
    timeout: 2s
    retries: { attempts: 3, perTryTimeout: 500ms, retryOn: [connect-failure, reset, 503], backoff: { base: 25ms, max: 250ms } }
    requestHeaders:  { set: { x-env: prod }, remove: [ x-debug ] }
    responseHeaders: { set: {}, remove: [] }
    fault: { delay: { percent: 10, duration: 100ms }, abort: { percent: 5, status: 503 } }
    mirror: { subset: { version: v2 }, percent: 10 }
    rateLimit: { requestsPerSecond: 50, burst: 50 }
  - match: { path: /exact }
    timeout: 1m
---
kind: TrafficPolicy
service: payments
loadBalancer: leastRequest
circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 }
outlierDetection: { consecutive5xx: 5, consecutiveGatewayErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10 }
retryBudget: { percent: 20, minPerSecond: 10 }
rateLimit: { requestsPerSecond: 100, burst: 100, perCaller: false }
connectTimeout: 5s
fallback: { status: 200, headers: { content-type: application/json }, body: '{"degraded":true}' }
---
kind: AuthorizationPolicy
service: payments
default: deny
allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
---
kind: Instance
service: payments
address: 127.0.0.1
port: 16006
labels: { version: v1 }
---
kind: Instance
name: payments-v2
resourceVersion: "7"
service: payments
address: "[::1]"
port: 16007
labels: { version: v2, zone: a }
health: unhealthy
ttl: 30s
---
kind: Service
name: payments
protocol: http
port: 8080
"""

DOCS = [d for d in RESOURCES.split("---\n")]

def config_seeds():
    base = "service: web\ninbound: { app: 127.0.0.1:8080 }\ntls: { cert: web.pem, key: web.key, trustBundle: ca.pem }\n"
    write("config", "minimal.yaml", base)
    write("config", "full-static.yaml", """\
service: web
inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080, protocol: http2 }
outbound: { listen: 127.0.0.1:15001, tcp: [ { listen: 127.0.0.1:15432, service: db } ] }
admin:    { listen: 127.0.0.1:15000 }
trustDomain: example.org
tls:      { cert: ./certs/web.pem, key: /abs/web.key, trustBundle: ca.pem }
resources:
""" + "".join("  - " + d.replace("\n", "\n    ").rstrip() + "\n" for d in DOCS))
    write("config", "dynamic.yaml", """\
service: web
inbound:  { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }
outbound: { listen: 127.0.0.1:15001 }
controlPlane:
  address: https://127.0.0.1:15010
  tokenFile: web.token
  caFile: ca.pem
  advertise: 10.0.0.7:15006
  labels: { version: v1 }
  dependencies: [ payments ]
""")
    write("config", "dynamic-wildcard.yaml", "service: web\ninbound: { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }\ncontrolPlane: { address: https://[::1]:15010/, tokenFile: t, caFile: c }\n")
    write("config", "both-modes.yaml", base + "controlPlane: { address: https://cp:1, tokenFile: t, caFile: c }\n")
    write("config", "same-listener.yaml", "service: web\ninbound: { listen: 127.0.0.1:1, app: 127.0.0.1:8080 }\nadmin: { listen: 127.0.0.1:1 }\ntls: { cert: a, key: b, trustBundle: c }\n")
    write("config", "anchors.yaml", "a: &a [x, y]\nservice: web\ninbound: { app: 127.0.0.1:8080 }\ntls: &t { cert: a, key: b, trustBundle: c }\nextra: *t\n")
    write("config", "json.yaml", json.dumps({"service": "web", "inbound": {"app": "127.0.0.1:8080"}, "tls": {"cert": "a", "key": "b", "trustBundle": "c"}, "resources": [yaml.safe_load(DOCS[0])]}))
    write("config", "bad-types.yaml", "service: Web_1\ninbound: [1]\noutbound: { tcp: 3 }\ntrustDomain: MESH\nresources: {}\n")

def apply_seeds():
    write("apply-yaml", "all.yaml", RESOURCES)
    for i, d in enumerate(DOCS):
        write("apply-yaml", "doc%d.yaml" % i, d)
    write("apply-yaml", "dup.yaml", DOCS[0] + "---\n" + DOCS[0])
    write("apply-yaml", "empty-docs.yaml", "---\n---\n# nothing\n---\nkind: Service\nname: a\n")
    write("apply-yaml", "unknown.yaml", "kind: Gateway\nname: x\n---\nkind: Route\nservice: a\nrules: [ { match: { pathPrefix: pay } } ]\nextra: 1\n")
    write("apply-yaml", "percent.yaml", "kind: Route\nservice: a\nrules:\n  - fault: { delay: { percent: 12.5, duration: 1h }, abort: { percent: 100, status: 599 } }\n    mirror: { subset: {}, percent: 0.001 }\n")

def api_seeds():
    bodies = {
        "token.json": {"service": "web", "ttl": "24h"},
        "token-nottl.json": {"service": "web"},
        "csr.json": {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"},
        "register.json": {"service": "web", "address": "127.0.0.1", "port": 15006, "labels": {"version": "v1"}, "dependencies": ["payments"]},
        "register-v6.json": {"service": "web", "address": "::1", "port": 1},
        "heartbeat.json": {"name": "web-127.0.0.1-15006", "version": "12"},
        "deregister.json": {"name": "web-127.0.0.1-15006"},
        "apply-array.json": [yaml.safe_load(d) for d in DOCS],
        "apply-route.json": yaml.safe_load(DOCS[0]),
        "apply-policy.json": yaml.safe_load(DOCS[1]),
    }
    for name, body in bodies.items():
        write("api-json", name, json.dumps(body))
    write("api-json", "escapes.json", '{"service":"w\\u0065b","ttl":"1\\u0068","address":"\\ud83d\\ude00","port":1e3}')
    write("api-json", "uri.txt", "/v1/snapshot/web?version=12&instance=web%2D127.0.0.1%2D15006&x")

def snapshot_seeds():
    resources = [yaml.safe_load(d) for d in DOCS]
    for r in resources:
        if "resourceVersion" in r:
            del r["resourceVersion"]
    write("snapshot", "full.json", json.dumps({"service": "web", "version": "42", "resources": resources}, separators=(",", ":")))
    write("snapshot", "empty.json", '{"service":"web","version":"1","resources":[]}')
    write("snapshot", "numeric-version.json", '{"service":"payments","version":7,"resources":[' + json.dumps(resources[2]) + "]}")
    write("snapshot", "local-policy.json", json.dumps({"service": "payments", "version": "3", "resources": resources[1:3]}))
    write("snapshot", "bad.json", '{"service":"web","version":"x"}')

def csr_seeds():
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "k.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key], check=True)
        def csr(sans, der=False, name="web"):
            args = ["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + name]
            if sans:
                args += ["-addext", "subjectAltName=" + sans]
            if der:
                args += ["-outform", "DER"]
            return subprocess.run(args, check=True, capture_output=True).stdout
        cases = {
            "web": "URI:spiffe://mesh.local/service/web",
            "web-dns": "URI:spiffe://mesh.local/service/web,DNS:web.example",
            "other": "URI:spiffe://mesh.local/service/payments",
            "foreign": "URI:spiffe://evil.example/service/web",
            "two": "URI:spiffe://mesh.local/service/web,URI:spiffe://mesh.local/service/payments",
            "ip": "URI:spiffe://mesh.local/service/web,IP:127.0.0.1",
            "nospiffe": "URI:https://mesh.local/service/web",
            "control-plane": "URI:spiffe://mesh.local/control-plane",
            "none": "",
        }
        for name, sans in cases.items():
            write("csr", "pem-" + name, b"\x00" + csr(sans))
            write("csr", "pem-admin-" + name, b"\x80" + csr(sans))
            write("csr", "der-" + name, b"\x01" + csr(sans, der=True))
        rsa = os.path.join(tmp, "r.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", rsa], check=True)
        out = subprocess.run(["openssl", "req", "-new", "-key", rsa, "-subj", "/CN=web", "-addext",
                              "subjectAltName=URI:spiffe://mesh.local/service/web"], check=True, capture_output=True).stdout
        write("csr", "pem-rsa", b"\x00" + out)
    built = {
        "built-web": "web\nuspiffe://mesh.local/service/web\n",
        "built-admin": "*\nuspiffe://mesh.local/service/payments\ncpayments\n",
        "built-dns": "web\nuspiffe://mesh.local/service/web\ndweb.mesh\ndlocalhost\n",
        "built-ip": "web\nuspiffe://mesh.local/service/web\ni\x7f\x00\x00\x01\n",
        "built-email": "web\nuspiffe://mesh.local/service/web\neroot@mesh.local\n",
        "built-other": "web\nuspiffe://mesh.local/service/payments\n",
        "built-cp": "*\nuspiffe://mesh.local/control-plane\n",
        "built-nested": "*\nuspiffe://mesh.local/service/a/b\n",
        "built-none": "web\n",
    }
    for name, text in built.items():
        write("csr", name, b"\x02" + text.encode("latin-1"))

def chunked_seeds():
    bodies = {
        "simple": b"5\r\nhello\r\n0\r\n\r\n",
        "two-chunks": b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
        "ext": b"4;name=value;q=\"x y\"\r\nabcd\r\n0;last\r\n\r\n",
        "trailers": b"1\r\nx\r\n0\r\nx-mesh-caller: evil\r\ngrpc-status: 0\r\nX_Mesh_Caller:\t a \r\n\r\n",
        "leading-zeros": b"0000000000000000000000000000001\r\nz\r\n00\r\n\r\n",
        "big": b"7fffffffffffffff\r\nabc",
        "overflow": b"8000000000000000\r\n",
        "bare-lf": b"5\nhello\n0\n\n",
        "space": b"5 ;x\r\nhello\r\n0\r\n\r\n",
        "obs-fold": b"0\r\na: b\r\n c\r\n\r\n",
        "no-crlf-after-data": b"2\r\nabc\r\n0\r\n\r\n",
        "truncated-trailer": b"0\r\nexpires: Thu, 01 Dec 1994 16:00:00 GMT\r",
    }
    for name, body in bodies.items():
        for control, limits in [(0x7F, 0x13), (0x00, 0x00), (0x02, 0x09), (0x05, 0x06)]:
            write("chunked", "%s-%02x%02x" % (name, control, limits), bytes([control, limits]) + body)

config_seeds(); apply_seeds(); api_seeds(); snapshot_seeds(); csr_seeds(); chunked_seeds()
