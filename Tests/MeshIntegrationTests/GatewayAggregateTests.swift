import Foundation
import MeshTestSupport
import Testing

/// Aggregate rules with real processes: one request through the gateway fans out over mTLS to
/// the mesh, the JSON answers merged under their keys; a slow call is cut at the aggregate's
/// timeout (its key `null`, its cause under `_errors`), and when every call fails the answer is
/// 502 with the taxonomy's `x-mesh-error`. Each call gets its service's resilience as an
/// outbound request would: the Route's retries on another endpoint, the circuit breaker.
@Suite(.serialized) struct GatewayAggregateTests {
    static let resources = """
          - kind: GatewayRoute
            name: home
            hosts: [ api.example.com ]
            rules:
              - match: { path: /home }
                cors: { allowOrigins: [ "https://app.example.com" ] }
                aggregate:
                  timeout: 3s
                  calls:
                    - { key: fast, service: payments, path: /json/fast }
                    - { key: slow, service: payments, path: "/json/slow?ms=60000" }
              - match: { path: /broken }
                aggregate:
                  timeout: 15s
                  calls: [ { key: ghost, service: ghost, path: /json/x }, { key: failing, service: payments, path: /status/500 } ]
        """

    /// The GatewayRoute whose `/home` aggregates `calls` (a YAML flow list) within 15 s.
    static func home(_ calls: String) -> String {
        """
          - kind: GatewayRoute
            name: home
            hosts: [ api.example.com ]
            rules: [ { match: { path: /home }, aggregate: { timeout: 15s, calls: \(calls) } } ]
        """
    }

    /// Two calls at once, round robin over two instances: one of them meets the instance that
    /// answers 503 first, and the Route's retry takes it to the other.
    static let retrying = home("[ { key: a, service: payments, path: /json/a }, { key: b, service: payments, path: /json/b } ]") + """

          - kind: Route
            service: payments
            rules: [ { match: { pathPrefix: / }, retries: { attempts: 2, retryOn: [ 503 ] } } ]
          - { kind: TrafficPolicy, service: payments, loadBalancer: roundRobin }
        """

    /// The first call holds the only `maxRequests` slot while the second starts; `policy`: more
    /// of payments' TrafficPolicy.
    static func guarded(_ policy: String = "") -> String {
        home(#"[ { key: slow, service: payments, path: "/json/slow?ms=300" }, { key: refused, service: payments, path: /json/r } ]"#) + """

              - { kind: TrafficPolicy, service: payments, circuitBreaker: { maxRequests: 1 }\(policy) }
            """
    }

    /// Two calls at once, round robin over a live instance and one whose port nobody listens
    /// on: the call that meets the dead one goes to the other, and the failed connect ejects it.
    static func deadInstance(port: Int) -> String {
        home("[ { key: a, service: payments, path: /json/a }, { key: b, service: payments, path: /json/b } ]") + """

          - { kind: Instance, service: payments, address: 127.0.0.1, port: \(port), labels: { app: dead } }
          - { kind: TrafficPolicy, service: payments, loadBalancer: roundRobin, outlierDetection: { consecutiveGatewayErrors: 1, maxEjectionPercent: 50 } }
        """
    }

    static func object(_ body: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    }

    @Test func aSlowCallIsNullWithinTheTimeoutAndTheOthersAreMerged() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.resources)
        let started = ContinuousClock.now
        let answer = try await edge.https("api.example.com", "/home", ["-H", "Origin: https://app.example.com"])
        let elapsed = ContinuousClock.now - started
        #expect(answer.status == 200 && answer.headers["content-type"] == "application/json", "\(answer)")
        #expect(answer.headers["access-control-allow-origin"] == "https://app.example.com", "the rule's CORS: \(answer.headers)")
        let merged = Self.object(answer.body)
        #expect((merged?["fast"] as? [String: Any])?["path"] as? String == "/json/fast", "\(answer.body)")
        #expect(merged?["slow"] is NSNull, "\(answer.body)")
        #expect((merged?["_errors"] as? [String: String]) == ["slow": "timeout"], "\(answer.body)")
        // 3 s timeout; the slow call would take 60 s. The bound leaves room for curl over TLS
        // on a loaded machine (7.3 s once beside the parallel suites) and is far from 60 s.
        #expect(elapsed < .seconds(20), "\(elapsed)")
        #expect(app.requests == 2)
    }

    /// The timeout is generous: this is about the causes (a loaded machine took over 1 s for
    /// the first mTLS call, which then said `timeout`).
    @Test func everyCallFailingIsAnError() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.resources)
        let answer = try await edge.https("api.example.com", "/broken")
        #expect(answer.status == 502 && answer.headers["x-mesh-error"] == "no-healthy-endpoint", "\(answer)")
        #expect(answer.body.contains("ghost: no-healthy-endpoint; failing: status-500"), "\(answer.body)")
    }

    @Test func aCallAnswered503IsRetriedOnTheOtherInstance() async throws {
        let good = try await TestHTTPApp(name: "good"), bad = try await TestHTTPApp(name: "bad", alwaysStatus: 503)
        let edge = try await GatewayMesh(backends: [(good, "app: good"), (bad, "app: bad")], gatewayResources: Self.retrying)
        let answer = try await edge.https("api.example.com", "/home")
        #expect(answer.status == 200, "\(answer)")
        let merged = Self.object(answer.body)
        #expect((merged?["a"] as? [String: Any])?["app"] as? String == "good", "\(answer.body)")
        #expect((merged?["b"] as? [String: Any])?["app"] as? String == "good", "\(answer.body)")
        #expect(merged?["_errors"] == nil, "\(answer.body)")
        #expect(bad.requests == 1 && good.requests == 2, "bad \(bad.requests), good \(good.requests)")
        let metrics = try await edge.metrics()
        #expect(metricValue(metrics, "sidecar_retries_total", ["peer": "payments", "reason": "503"]) == 1)
        #expect(metricValue(metrics, "sidecar_requests_total", ["direction": "outbound", "peer": "payments", "code": "200"]) == 2, "\(metrics)")
    }

    @Test func aCallTheBreakerRefusesIsNullWithItsCause() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.guarded())
        let answer = try await edge.https("api.example.com", "/home")
        #expect(answer.status == 200, "\(answer)")
        let merged = Self.object(answer.body)
        #expect((merged?["slow"] as? [String: Any])?["app"] as? String == "payments-v1", "\(answer.body)")
        #expect(merged?["refused"] is NSNull, "\(answer.body)")
        #expect((merged?["_errors"] as? [String: String]) == ["refused": "circuit-open"], "\(answer.body)")
        #expect(app.requests == 1)
        let metrics = try await edge.metrics()
        #expect(metricValue(metrics, "sidecar_circuit_breaker_rejections_total", ["peer": "payments"]) == 1, "\(metrics)")
    }

    /// The degradation an outbound request would get: the TrafficPolicy's `fallback` body (JSON)
    /// is the refused call's value, its cause still under `_errors`.
    @Test func aCallTheBreakerRefusesTakesItsServicesJSONFallback() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let fallback = #", fallback: { status: 200, headers: { content-type: application/json }, body: '{"degraded":true}' }"#
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.guarded(fallback))
        let answer = try await edge.https("api.example.com", "/home")
        #expect(answer.status == 200, "\(answer)")
        let merged = Self.object(answer.body)
        #expect((merged?["slow"] as? [String: Any])?["app"] as? String == "payments-v1", "\(answer.body)")
        #expect((merged?["refused"] as? [String: Any])?["degraded"] as? Bool == true, "\(answer.body)")
        #expect((merged?["_errors"] as? [String: String]) == ["refused": "circuit-open"], "\(answer.body)")
        #expect(app.requests == 1)
    }

    @Test func aCallWhoseConnectFailsGoesToTheOtherInstanceAndEjectsTheDeadOne() async throws {
        let app = try await TestHTTPApp(name: "live")
        let edge = try await GatewayMesh(
            backends: [(app, "app: live")], gatewayResources: Self.deadInstance(port: try freeLoopbackPort()))
        let answer = try await edge.https("api.example.com", "/home")
        #expect(answer.status == 200, "\(answer)")
        let merged = Self.object(answer.body)
        #expect((merged?["a"] as? [String: Any])?["app"] as? String == "live", "\(answer.body)")
        #expect((merged?["b"] as? [String: Any])?["app"] as? String == "live", "\(answer.body)")
        #expect(app.requests == 2)
        let metrics = try await edge.metrics()
        #expect(metricValue(metrics, "sidecar_outlier_ejections_total", ["peer": "payments"]) == 1, "\(metrics)")
    }
}
