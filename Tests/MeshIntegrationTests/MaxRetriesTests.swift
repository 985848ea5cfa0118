import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// The circuit breaker's `maxRetries` caps retries in flight for a destination: with it at 0,
/// a route that would retry every third failing GET sends each request once, and every
/// refused retry is a breaker rejection with `retry_stopped: max-retries` in the access log.
@Suite(.serialized) final class MaxRetriesTests {
    let app: TestHTTPApp
    let mesh: PaymentsMesh

    init() async throws {
        app = try await TestHTTPApp(name: "flaky", failEvery: 3)
        mesh = try await PaymentsMesh(backends: [(app, "version: v1")], webResources: """
              - kind: TrafficPolicy
                service: payments
                circuitBreaker: { maxRetries: 0 }
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: / }
                    retries: { attempts: 3, retryOn: [503], backoff: { base: 5ms, max: 20ms } }
            """)
    }

    @Test func noRetrySlotMeansNoRetryAndARejection() async throws {
        let urls = (0..<30).flatMap { ["-o", "/dev/null", "http://payments/get/\($0)"] }
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-w", "%{http_code}\n", "-x", "http://127.0.0.1:\(mesh.webOut)"] + urls)
        let codes = result.stdout.split(separator: "\n")
        #expect(codes.filter { $0 == "503" }.count == 10, "\(result.stdout)")
        #expect(app.requests == 30, "every request sent once")
        let metrics = try await mesh.webMetrics()
        // No retry ever started, so the 503 series may not exist: absent or zero.
        #expect(metricValueOrZero(metrics, "sidecar_retries_total", ["peer": "payments", "reason": "503"]) == 0)
        #expect(metricValue(metrics, "sidecar_circuit_breaker_rejections_total", ["peer": "payments"]) == 10)
        #expect(metricValue(metrics, "sidecar_circuit_breaker_open", ["peer": "payments"]) == 0)
        #expect(await eventually {
            self.mesh.web.accessLog.components(separatedBy: "\"retry_stopped\":\"max-retries\"").count - 1 == 10
        }, "\(mesh.web.accessLog)")
    }
}
