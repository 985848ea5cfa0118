/// The examples of DESIGN.md, verbatim, shared by the config tests.
enum ConfigFixtures {
    static let webYAML = """
        # web.yaml: web's app listens on 127.0.0.1:8080 and calls payments
        service: web
        inbound:  { listen: 127.0.0.1:15006, app: 127.0.0.1:8080 }
        outbound: { listen: 127.0.0.1:15001 }
        admin:    { listen: 127.0.0.1:15000 }
        tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
        resources:
          - kind: Instance                 # one per endpoint: address:port is that sidecar's inbound
            service: payments
            address: 127.0.0.1
            port: 16006
            labels: { version: v1 }
          - kind: Route
            service: payments
            rules:
              - match: { pathPrefix: /pay }
                timeout: 2s
                retries: { attempts: 3, perTryTimeout: 500ms }
                backends: [ { subset: { version: v1 }, weight: 100 } ]

        """

    static let paymentsYAML = """
        # payments.yaml: payments' app listens on 127.0.0.1:9090
        service: payments
        inbound:  { listen: 127.0.0.1:16006, app: 127.0.0.1:9090 }
        outbound: { listen: 127.0.0.1:16001 }
        admin:    { listen: 127.0.0.1:16000 }
        tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
        resources:
          - kind: AuthorizationPolicy
            service: payments
            default: deny
            allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]

        """

    /// The "Field names" block: every kind with every field.
    static let resourcesYAML = """
        kind: Route
        service: payments
        rules:                                    # first match wins; no rule matched -> 404 no-route
          - match: { pathPrefix: /pay, method: POST, headers: { x-canary: "1" } }   # or path: /exact
            backends: [ { subset: { version: v1 }, weight: 90 }, { subset: { version: v2 }, weight: 10 } ]
            timeout: 2s
            retries: { attempts: 3, perTryTimeout: 500ms, retryOn: [connect-failure, reset, 503], backoff: { base: 25ms, max: 250ms } }
            requestHeaders:  { set: { x-env: prod }, remove: [ x-debug ] }
            responseHeaders: { set: {}, remove: [] }
            fault: { delay: { percent: 10, duration: 100ms }, abort: { percent: 5, status: 503 } }
            mirror: { subset: { version: v2 }, percent: 10 }
            rateLimit: { requestsPerSecond: 50, burst: 50 }   # optional: enforced on the caller's outbound for this rule
        ---
        kind: TrafficPolicy
        service: payments
        loadBalancer: leastRequest                # or roundRobin
        circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 }
        outlierDetection: { consecutive5xx: 5, consecutiveGatewayErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 10 }
        retryBudget: { percent: 20, minPerSecond: 10 }
        rateLimit: { requestsPerSecond: 100, burst: 100, perCaller: false }   # enforced by each payments sidecar on inbound
        connectTimeout: 5s
        fallback: { status: 200, headers: { content-type: application/json }, body: '{"degraded":true}' }
        ---
        kind: AuthorizationPolicy
        service: payments
        default: deny                             # or allow (the default when no policy exists)
        allow: [ { from: [ web ], methods: [ GET, POST ], pathPrefix: /pay } ]
        ---
        kind: Instance                            # from the registry; in static mode written by hand
        service: payments
        address: 127.0.0.1
        port: 16006
        labels: { version: v1 }
        ---
        kind: Service
        name: payments
        protocol: http                            # http | http2 | tcp

        """

    /// A minimal valid bootstrap to which a test appends or swaps lines.
    static func sidecar(_ extra: String = "") -> String {
        """
        service: web
        inbound: { app: 127.0.0.1:8080 }
        tls: { cert: web.pem, key: web.key, trustBundle: ca.pem }

        """ + extra
    }
}
