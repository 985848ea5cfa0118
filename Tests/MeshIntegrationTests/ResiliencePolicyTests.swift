import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// TrafficPolicy and Route policy at work between real sidecars: circuit breaker with the
/// fallback answer, passive outlier ejection, local rate limits on outbound and inbound; web's
/// access log names each rejection's and reroute's cause.
@Suite(.serialized) final class ResiliencePolicyTests {
    let good: TestHTTPApp
    let bad: TestHTTPApp
    let paymentsMesh: PaymentsMesh
    var webOut: Int { paymentsMesh.webOut }
    var webAdmin: Int { paymentsMesh.webAdmin }
    var goodAdmin: Int { paymentsMesh.paymentsAdmins[0] }
    var web: SidecarProcess { paymentsMesh.web }

    /// The good payments sidecar's own inbound limit: high unless a test exercises it.
    let inboundLimit: Int

    convenience init() async throws {
        try await self.init(inboundLimit: 1000)
    }

    init(inboundLimit: Int) async throws {
        self.inboundLimit = inboundLimit
        good = try await TestHTTPApp(name: "good")
        bad = try await TestHTTPApp(name: "bad", alwaysStatus: 500)
        paymentsMesh = try await PaymentsMesh(
            backends: [(good, "app: good"), (bad, "app: bad")],
            paymentsResources: { index in """
                  - kind: TrafficPolicy
                    service: payments
                    rateLimit: { requestsPerSecond: \(index == 0 ? inboundLimit : 1000), burst: \(index == 0 ? inboundLimit : 1000) }
                """ },
            webResources: """
                  - kind: Route
                    service: payments
                    rules:
                      - match: { pathPrefix: /limited }
                        backends: [ { subset: { app: good }, weight: 100 } ]
                        rateLimit: { requestsPerSecond: 10, burst: 10 }
                      - match: { pathPrefix: /slow }
                        backends: [ { subset: { app: good }, weight: 100 } ]
                      - match: { pathPrefix: / }
                  - kind: TrafficPolicy
                    service: payments
                    loadBalancer: roundRobin
                    circuitBreaker: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 4, maxRetries: 3 }
                    outlierDetection: { consecutive5xx: 3, consecutiveGatewayErrors: 3, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
                    fallback: { status: 200, headers: { content-type: application/json }, body: '{"degraded":true}' }
                """)
    }

    func metrics(_ port: Int) async throws -> String { try await curl(["http://127.0.0.1:\(port)/metrics"]).body }

    /// web's access log lines that contain `text`, once `count` of them are there (or at the deadline).
    func webLogLines(containing text: String, count: Int) async -> [Substring] {
        let lines = { self.web.accessLog.split(separator: "\n").filter { $0.contains(text) } }
        _ = await eventually(timeout: .seconds(10)) { lines().count >= count }
        return lines()
    }

    @Test func breakerOverflowServesTheFallbackAtOnce() async throws {
        let clients = try (0..<12).map { index in
            try ChildProcess(["curl", "-sS", "-i", "--max-time", "20", "-x", "http://127.0.0.1:\(webOut)",
                              "http://payments/slow?n=\(index)&ms=1500"])
        }
        var degraded = 0, served = 0
        for client in clients {
            _ = await client.wait(timeout: .seconds(30))
            if client.stdout.contains("x-mesh-error: circuit-open") && client.stdout.contains("{\"degraded\":true}") {
                degraded += 1
            } else if client.stdout.contains("app=good") {
                served += 1
            }
            client.terminate()
        }
        #expect(served == 4, "only maxRequests=4 reach the upstream at once")
        #expect(degraded == 8)
        let rejected = await webLogLines(containing: "\"mesh_error\":\"circuit-open\"", count: 8)
        #expect(rejected.count == 8 && rejected.allSatisfy { $0.contains("\"status\":200") }, "the fallback answered: \(rejected)")
        let web = try await metrics(webAdmin)
        #expect(metricValue(web, "sidecar_circuit_breaker_rejections_total", ["peer": "payments"]) == 8)
        #expect(metricValue(web, "sidecar_circuit_breaker_open", ["peer": "payments"]) == 0, "closed again once idle")
    }

    @Test func anEndpointAnswering500sIsEjectedAndTrafficMovesToTheHealthyOne() async throws {
        var codes: [Int] = []
        for index in 0..<30 {
            codes.append(try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/pay/\(index)"]).status)
        }
        // Round robin sends every other request to the bad endpoint until 3 consecutive 5xx eject it.
        #expect(codes.filter { $0 == 500 }.count == 3, "\(codes)")
        #expect(codes.suffix(20).allSatisfy { $0 == 200 })
        // Once the bad endpoint is ejected, each request's line says the balancer avoided it.
        let rerouted = await webLogLines(containing: "\"avoided_ejected\":1", count: 20)
        #expect(rerouted.count >= 20 && rerouted.allSatisfy { $0.contains("\"status\":200") }, "\(web.accessLog)")
        let web = try await metrics(webAdmin)
        #expect(metricValue(web, "sidecar_outlier_ejections_total", ["peer": "payments"]) == 1)
        #expect(metricValue(web, "sidecar_endpoints", ["peer": "payments", "state": "ejected"]) == 1)
        #expect(metricValue(web, "sidecar_endpoints", ["peer": "payments", "state": "healthy"]) == 1)
    }

    @Test func routeRateLimitAnswers429WithRetryAfter() async throws {
        let urls = (0..<40).flatMap { ["-o", "/dev/null", "http://payments/limited/\($0)"] }
        let started = ContinuousClock.now
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-d", "amount=1", "-w", "%{http_code} %{num_connects}\n", "-x", "http://127.0.0.1:\(webOut)"] + urls)
        let elapsed = Double(started.duration(to: .now).components.seconds) + 1
        let lines = result.stdout.split(separator: "\n").map { $0.split(separator: " ") }
        let codes = lines.map { $0.first ?? "" }
        // A 429 keeps the keep-alive connection (its small body has arrived and is skipped):
        // 40 POSTs, one connection.
        #expect(lines.compactMap { $0.last.flatMap { Int($0) } }.reduce(0, +) == 1, "\(result.stdout)")
        let allowed = codes.filter { $0 == "200" }.count
        // The burst of 10, plus at most what refills at 10/s while the run lasts.
        #expect(allowed >= 10 && Double(allowed) <= 10 + 10 * elapsed, "\(elapsed) s: \(codes)")
        #expect(codes.filter { $0 == "429" }.count == 40 - allowed)
        let limitedLines = await webLogLines(containing: "\"mesh_error\":\"rate-limited\"", count: 40 - allowed)
        #expect(limitedLines.count == 40 - allowed && limitedLines.allSatisfy { $0.contains("\"status\":429") })
        let limited = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/limited/x"])
        if limited.status == 429 {
            #expect(limited.headers["x-mesh-error"] == "rate-limited")
            #expect(limited.headers["retry-after"] == "1")
        }
    }
}

/// The destination's own TrafficPolicy rate limit, enforced on its inbound.
@Suite(.serialized) final class InboundRateLimitTests {
    let mesh: ResiliencePolicyTests

    init() async throws {
        mesh = try await ResiliencePolicyTests(inboundLimit: 5)
    }

    @Test func inboundRateLimitProtectsTheService() async throws {
        let urls = (0..<30).flatMap { ["-o", "/dev/null", "http://payments/slow/\($0)"] }
        let started = ContinuousClock.now
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-w", "%{http_code}\n", "-x", "http://127.0.0.1:\(mesh.webOut)"] + urls)
        let elapsed = Double(started.duration(to: .now).components.seconds) + 1
        let codes = result.stdout.split(separator: "\n")
        let allowed = codes.filter { $0 == "200" }.count
        // payments allows a burst of 5 and 5/s after it, whoever sends.
        #expect(allowed >= 5 && Double(allowed) <= 5 + 5 * elapsed, "\(elapsed) s: \(codes)")
        #expect(codes.filter { $0 == "429" }.count == 30 - allowed)
        let limited = try await curl(["-x", "http://127.0.0.1:\(mesh.webOut)", "http://payments/slow/again"])
        if limited.status == 429 {
            #expect(limited.headers["x-mesh-error"] == "rate-limited")
            #expect(limited.headers["retry-after"] != nil)
        }
        let good = try await mesh.metrics(mesh.goodAdmin)
        #expect(metricValue(good, "sidecar_requests_total", ["direction": "inbound", "peer": "web", "code": "429"])
            == Double(30 - allowed) + (limited.status == 429 ? 1 : 0))
    }
}
