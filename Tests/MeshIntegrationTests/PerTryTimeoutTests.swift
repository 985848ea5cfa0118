import Foundation
import MeshTestSupport
import Testing

/// `retries.perTryTimeout` between real sidecars: one payments instance answers after 5 s,
/// the other at once. A try that outlives its per-try timeout is abandoned (its connection
/// closed) and retried on the other endpoint; the route timeout still bounds all tries.
@Suite(.serialized) final class PerTryTimeoutTests {
    let slow: TestHTTPApp
    let fast: TestHTTPApp
    let mesh: PaymentsMesh

    init() async throws {
        slow = try await TestHTTPApp(name: "slow", delay: 5000)
        fast = try await TestHTTPApp(name: "fast")
        mesh = try await PaymentsMesh(backends: [(slow, "speed: slow"), (fast, "speed: fast")], webResources: """
              - kind: TrafficPolicy
                service: payments
                loadBalancer: roundRobin
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /bounded }
                    backends: [ { subset: { speed: slow }, weight: 100 } ]
                    timeout: 1s
                    retries: { attempts: 10, perTryTimeout: 300ms, backoff: { base: 5ms, max: 10ms } }
                  - match: { pathPrefix: / }
                    timeout: 10s
                    retries: { attempts: 4, perTryTimeout: 1s, backoff: { base: 5ms, max: 10ms } }
            """)
    }

    @Test func aSlowTryIsAbandonedAndRetriedOnTheFastEndpoint() async throws {
        let lines = try await mesh.run((0..<10).map { "http://payments/get/\($0)" })
        #expect(lines.count == 10, "\(lines)")
        for line in lines {
            let parts = line.split(separator: " ")
            #expect(parts.first == "200", "\(lines)")
            // A per-try timeout (1 s) or two on a loaded machine, never the slow answer (5 s).
            #expect((parts.last.flatMap { Double($0) } ?? 99) < 4.5, "\(lines)")
        }
        // Every request ended on the fast endpoint (a loaded machine may time out a fast try too).
        #expect(fast.requests >= 10)
        // Round robin sends every other first try to the slow endpoint; each of those timed out.
        #expect(slow.requests >= 3)
        // Abandoned tries are not reused: every slow try came on its own connection.
        #expect(slow.connections >= slow.requests)
        // Each slow try timed out (on a loaded machine a try may time out before the app
        // counted it, so the app's count is a floor), and the access log names every one.
        let timedOut = metricValue(
            try await mesh.webMetrics(), "sidecar_retries_total", ["peer": "payments", "reason": "per-try-timeout"])
        #expect(timedOut >= Double(slow.requests) && timedOut <= 30)
        let logged = mesh.web.accessLog.components(separatedBy: "\"per-try-timeout\"").count - 1
        #expect(Double(logged) == timedOut, "\(mesh.web.accessLog)")
    }

    @Test func theRouteTimeoutBoundsAllTries() async throws {
        let started = ContinuousClock.now
        let response = try await curl(["-x", "http://127.0.0.1:\(mesh.webOut)", "http://payments/bounded"])
        let elapsed = started.duration(to: .now)
        #expect(response.status == 504)
        #expect(response.headers["x-mesh-error"] == "timeout")
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(3), "\(elapsed)")
        // Tries at about 0, 0.3, 0.6 and 0.9 s, then the 1 s route timeout: never all 10 attempts.
        #expect(await eventually(timeout: .seconds(5)) { self.slow.requests >= 2 })
        #expect(slow.requests <= 4, "\(slow.requests)")
    }
}
