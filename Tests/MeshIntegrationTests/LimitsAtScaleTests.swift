import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// Circuit breaker, connection pool and rate limits under real concurrency, with sidecars on
/// two event loops so the process-wide limits are shown to be exact, not per loop: 1100
/// requests against `maxRequests: 100`, `maxConnections`/`maxPendingRequests` queueing, and
/// route and inbound rate limits within 5 % of the configured rate.
@Suite(.serialized) final class LimitsAtScaleTests {
    let directory = TemporaryDirectory()
    let pki = TestPKI()
    var sidecars: [SidecarProcess] = []
    var app: TestHTTPApp!
    /// web on two loops: maxRequests 100, a route rate limit.
    var webOut = 0
    var webAdmin = 0
    /// web on one loop: maxConnections 2, maxPendingRequests 2.
    var poolOut = 0
    var poolAdmin = 0
    var limitedAdmin = 0

    init() async throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "web").write(to: certs, name: "web")
        try pki.issue(service: "payments").write(to: certs, name: "payments")
        app = try await TestHTTPApp(name: "payments")
        var instances = ""
        for name in ["open", "limited"] {
            let inbound = try freeLoopbackPort(), admin = try freeLoopbackPort()
            if name == "limited" { limitedAdmin = admin }
            let policy = name == "limited" ? """
                resources:
                  - kind: TrafficPolicy
                    service: payments
                    rateLimit: { requestsPerSecond: 25, burst: 25 }
                """ : ""
            let sidecar = try SidecarProcess(configYAML: """
                service: payments
                inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app.port) }
                outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                admin:    { listen: 127.0.0.1:\(admin) }
                tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
                \(policy)
                """, in: directory, name: "payments-\(name)", extraArguments: ["--access-log", "off", "--workers", "2"])
            #expect(await sidecar.waitUntilListening(ports: [inbound]), "\(sidecar.logs)")
            sidecars.append(sidecar)
            instances += "\n  - { kind: Instance, service: payments, address: 127.0.0.1, port: \(inbound), labels: { app: \(name) } }"
        }
        for (workers, breaker) in [
            (2, "{ maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 100, maxRetries: 3 }"),
            (1, "{ maxConnections: 2, maxPendingRequests: 2, maxRequests: 1024, maxRetries: 3 }\n    connectTimeout: 3s"),
        ] {
            let out = try freeLoopbackPort(), admin = try freeLoopbackPort()
            if workers == 2 { (webOut, webAdmin) = (out, admin) } else { (poolOut, poolAdmin) = (out, admin) }
            let web = try SidecarProcess(configYAML: """
                service: web
                inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
                outbound: { listen: 127.0.0.1:\(out) }
                admin:    { listen: 127.0.0.1:\(admin) }
                tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
                resources:\(instances)
                  - kind: Route
                    service: payments
                    rules:
                      - match: { pathPrefix: /route-limited }
                        backends: [ { subset: { app: open }, weight: 100 } ]
                        rateLimit: { requestsPerSecond: 5, burst: 5 }
                      - match: { pathPrefix: /inbound-limited }
                        backends: [ { subset: { app: limited }, weight: 100 } ]
                      - match: { pathPrefix: / }
                        timeout: 30s
                        backends: [ { subset: { app: open }, weight: 100 } ]
                  - kind: TrafficPolicy
                    service: payments
                    circuitBreaker: \(breaker)
                """, in: directory, name: "web-\(workers)", extraArguments: ["--access-log", "off", "--workers", "\(workers)"])
            #expect(await web.waitUntilListening(ports: [out]), "\(web.logs)")
            sidecars.append(web)
        }
    }

    deinit {
        sidecars.forEach { $0.stop() }
        directory.remove()
    }

    @Test func breakerAt1100ConcurrentAdmitsTheLimitAndRefusesTheRestQuickly() async throws {
        let upstreamDelay = Duration.seconds(10)
        let (webOut, webAdmin) = (self.webOut, self.webAdmin)
        async let load = HTTPLoadClient.run(
            port: webOut, host: "payments", path: "/slow?ms=10000", connections: 1100)
        let opened = try await eventually(timeout: .seconds(8)) {
            (metricValue(try await adminMetrics(webAdmin), "sidecar_circuit_breaker_open", ["peer": "payments"]) ?? 0) >= 1
        }
        #expect(opened, "the breaker reads open while the limit overflows")
        let responses = try await load
        let served = responses.filter { $0.status == 200 }
        let refused = responses.filter { $0.status == 503 && $0.meshError == "circuit-open" }
        #expect(responses.count == 1100)
        #expect(served.count == 100, "exactly maxRequests admitted across both loops")
        #expect(refused.count == 1000)
        #expect(app.maxInFlight <= 100)
        // Refused at once: every refusal well before the slow upstream answers.
        let slowest = refused.map(\.latency).max() ?? .zero
        #expect(slowest < upstreamDelay / 2, "slowest refusal took \(slowest)")
        #expect(served.allSatisfy { $0.latency >= upstreamDelay })
        let web = try await adminMetrics(webAdmin)
        #expect(metricValue(web, "sidecar_circuit_breaker_rejections_total", ["peer": "payments"]) == Double(refused.count))
        #expect(metricValue(web, "sidecar_circuit_breaker_open", ["peer": "payments"]) == 0, "closed once drained")
    }

    @Test func poolLimitsQueueThenRefuse() async throws {
        // maxConnections 2: two requests get connections, two wait for one to come free, and
        // with maxPendingRequests 2 full the last two are refused at once.
        let responses = try await HTTPLoadClient.run(
            port: poolOut, host: "payments", path: "/slow?ms=1500", connections: 6)
        let served = responses.filter { $0.status == 200 }.map(\.latency).sorted()
        let refused = responses.filter { $0.status == 503 && $0.meshError == "circuit-open" }
        #expect(served.count == 4, "\(responses)")
        #expect(refused.count == 2)
        #expect(refused.allSatisfy { $0.latency < .milliseconds(1200) }, "\(refused.map(\.latency))")
        if served.count == 4 {
            #expect(served[1] < .milliseconds(2900), "the first two are served on their own connections")
            #expect(served[2] >= .milliseconds(3000), "the pending two waited for a connection to come free")
        }
        let pool = try await adminMetrics(poolAdmin)
        #expect(metricValue(pool, "sidecar_circuit_breaker_rejections_total", ["peer": "payments"]) == 2)
        #expect(metricValue(pool, "sidecar_circuit_breaker_open", ["peer": "payments"]) == 0)
    }

    @Test func aPendingRequestWaitsAtMostTheConnectTimeout() async throws {
        // Both connections busy for 5 s: the two waiters give up after connectTimeout (3 s).
        let responses = try await HTTPLoadClient.run(
            port: poolOut, host: "payments", path: "/slow?ms=5000", connections: 4)
        let served = responses.filter { $0.status == 200 }
        let refused = responses.filter { $0.status == 503 && $0.meshError == "circuit-open" }
        #expect(served.count == 2, "\(responses)")
        #expect(refused.count == 2)
        #expect(refused.allSatisfy { $0.latency >= .milliseconds(2900) && $0.latency < .milliseconds(4900) },
                "\(refused.map(\.latency))")
    }

    /// Drives 3 s of load well above `perSecond`; the limit must let through its burst
    /// (`perSecond`) plus `perSecond` per second over the time the load lasted, within 5 %.
    func expectRateWithinFivePercent(
        path: String, connections: Int, perSecond: Double = 50
    ) async throws -> [HTTPLoadClient.Response] {
        let responses = try await HTTPLoadClient.run(
            port: webOut, host: "payments", path: path, connections: connections, duration: .seconds(3))
        let sent = responses.map(\.sent)
        guard let first = sent.min(), let last = sent.max() else {
            Issue.record("no responses")
            return []
        }
        let span = first.duration(to: last)
        let seconds = Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18
        let expected = perSecond + perSecond * seconds
        let accepted = Double(responses.filter { $0.status == 200 }.count)
        #expect(Double(responses.count) > 1.5 * expected, "the load must exceed the limit: \(responses.count) sent")
        #expect(abs(accepted - expected) <= expected * 0.05, "\(accepted) accepted in \(seconds) s, expected \(expected)")
        #expect(responses.allSatisfy { $0.status == 200 || $0.status == 429 })
        return responses
    }

    @Test func routeRateLimitHoldsWithinFivePercentAcrossLoops() async throws {
        // One connection: all the load on one of web's two loops, which must still get the
        // whole limit (a per-loop share would let through half). The rule allows 5/s: one
        // connection (one request at a time) on a loaded 2-core machine made only 11.7 requests/s
        // in CI beside the HTTP/2 and gateway suites.
        let responses = try await expectRateWithinFivePercent(path: "/route-limited/x", connections: 1, perSecond: 5)
        #expect(responses.filter { $0.status == 429 }.allSatisfy { $0.meshError == "rate-limited" })
    }

    @Test func inboundRateLimitHoldsWithinFivePercentAcrossLoops() async throws {
        // 25/s: 16 connections through two debug sidecars made 178 requests in 3 s while the
        // HTTP/2 and gRPC suites ran beside this one (50/s needed 300 to exceed the limit).
        let responses = try await expectRateWithinFivePercent(path: "/inbound-limited/x", connections: 16, perSecond: 25)
        let limited = try await adminMetrics(limitedAdmin)
        let refused = responses.filter { $0.status == 429 }.count
        #expect(metricValue(limited, "sidecar_requests_total", ["direction": "inbound", "peer": "web", "code": "429"])
            == Double(refused))
    }
}
