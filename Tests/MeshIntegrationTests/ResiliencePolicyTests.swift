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

    /// One answer of a `burst`: status, connections curl opened for it, and the two headers a
    /// rate-limited answer must carry (empty when absent).
    struct Answer {
        var status: Int
        var connects: Int
        var meshError: String
        var retryAfter: String
    }

    /// `urls` sent back to back by one curl through web's outbound (one keep-alive connection),
    /// each answer read with the headers the 429 checks need.
    func burst(_ urls: [String], extra: [String] = []) async throws -> [Answer] {
        let format = "status=%{http_code} connects=%{num_connects} error=%header{x-mesh-error} retry=%header{retry-after}\\n"
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-w", format, "-x", "http://127.0.0.1:\(webOut)"] + extra + urls.flatMap { ["-o", "/dev/null", $0] })
        return result.stdout.split(separator: "\n").map { line in
            var fields: [Substring: Substring] = [:]
            for field in line.split(separator: " ") {
                let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { fields[parts[0]] = parts[1] }
            }
            return Answer(
                status: fields["status"].flatMap { Int($0) } ?? 0, connects: fields["connects"].flatMap { Int($0) } ?? -1,
                meshError: String(fields["error"] ?? ""), retryAfter: String(fields["retry"] ?? ""))
        }
    }

    /// More bursts of `urls` until one answer is 429 (at most `rounds`), so the checks on the
    /// limited answers never pass by having none to look at.
    func untilLimited(_ answers: [Answer], _ urls: [String], extra: [String] = [], rounds: Int = 10) async throws -> [Answer] {
        var answers = answers
        for _ in 0..<rounds where !answers.contains(where: { $0.status == 429 }) {
            answers += try await burst(urls, extra: extra)
        }
        return answers
    }

    @Test func routeRateLimitAnswers429WithRetryAfter() async throws {
        let urls = (0..<40).map { "http://payments/limited/\($0)" }
        let started = ContinuousClock.now
        let first = try await burst(urls, extra: ["-d", "amount=1"])
        let elapsed = Double(started.duration(to: .now).components.seconds) + 1
        #expect(first.count == 40, "\(first)")
        // A 429 keeps the keep-alive connection (its small body has arrived and is skipped):
        // 40 POSTs, one connection.
        #expect(first.map(\.connects).reduce(0, +) == 1, "\(first)")
        let allowed = first.filter { $0.status == 200 }.count
        // The burst of 10, plus at most what refills at 10/s while the run lasts.
        #expect(allowed >= 10 && Double(allowed) <= 10 + 10 * elapsed, "\(elapsed) s: \(first.map(\.status))")
        #expect(first.filter { $0.status == 429 }.count == 40 - allowed)
        let limitedLines = await webLogLines(containing: "\"mesh_error\":\"rate-limited\"", count: 40 - allowed)
        #expect(limitedLines.count == 40 - allowed && limitedLines.allSatisfy { $0.contains("\"status\":429") })
        // Every answer is looked at: each 429 names its cause and when to come back; each 200 is the app's.
        let answers = try await untilLimited(first, urls, extra: ["-d", "amount=1"])
        let limited = answers.filter { $0.status == 429 }
        try #require(!limited.isEmpty, "no request was ever limited: \(answers.map(\.status))")
        #expect(limited.allSatisfy { $0.meshError == "rate-limited" && $0.retryAfter == "1" }, "\(limited)")
        #expect(answers.allSatisfy { $0.status == 429 || ($0.status == 200 && $0.meshError.isEmpty) }, "\(answers)")
    }
}

/// The destination's own TrafficPolicy rate limit, enforced on its inbound.
@Suite(.serialized) final class InboundRateLimitTests {
    let mesh: ResiliencePolicyTests

    init() async throws {
        mesh = try await ResiliencePolicyTests(inboundLimit: 5)
    }

    @Test func inboundRateLimitProtectsTheService() async throws {
        let urls = (0..<30).map { "http://payments/slow/\($0)" }
        let started = ContinuousClock.now
        let first = try await mesh.burst(urls)
        let elapsed = Double(started.duration(to: .now).components.seconds) + 1
        #expect(first.count == 30, "\(first)")
        let allowed = first.filter { $0.status == 200 }.count
        // payments allows a burst of 5 and 5/s after it, whoever sends.
        #expect(allowed >= 5 && Double(allowed) <= 5 + 5 * elapsed, "\(elapsed) s: \(first.map(\.status))")
        #expect(first.filter { $0.status == 429 }.count == 30 - allowed)
        // Every 429 came from payments' inbound through web, with its cause and a Retry-After.
        let answers = try await mesh.untilLimited(first, urls)
        let limited = answers.filter { $0.status == 429 }
        try #require(!limited.isEmpty, "no request was ever limited: \(answers.map(\.status))")
        #expect(limited.allSatisfy { $0.meshError == "rate-limited" && (Int($0.retryAfter) ?? 0) >= 1 }, "\(limited)")
        #expect(answers.allSatisfy { $0.status == 429 || ($0.status == 200 && $0.meshError.isEmpty) }, "\(answers)")
        let good = try await mesh.metrics(mesh.goodAdmin)
        #expect(metricValue(good, "sidecar_requests_total", ["direction": "inbound", "peer": "web", "code": "429"])
            == Double(limited.count))
    }
}
