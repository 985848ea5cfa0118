import Foundation
import MeshTestSupport
import Testing

/// `loadBalancer: ewma` against real sidecars: of two payments instances, the one whose app
/// answers 40 ms late gets few requests, while least-request (no load difference between
/// sequential requests) splits them about evenly.
@Suite(.serialized) struct LoadBalancingTests {
    func sharesOfTheSlowInstance(loadBalancer: String) async throws -> (slow: Int, fast: Int) {
        let fast = try await TestHTTPApp(name: "fast")
        let slow = try await TestHTTPApp(name: "slow", delay: 40)
        let mesh = try await PaymentsMesh(
            backends: [(fast, "speed: fast"), (slow, "speed: slow")],
            webResources: """
                  - { kind: TrafficPolicy, service: payments, loadBalancer: \(loadBalancer) }
                """, webArguments: ["--access-log", "off"])
        let statuses = try await mesh.run((0..<60).map { "http://payments/lb/\($0)" }, format: "%{http_code}\\n")
        #expect(statuses.filter { $0 == "200" }.count == 60, "\(statuses)")
        _ = mesh
        return (slow.requests, fast.requests)
    }

    @Test func ewmaSendsLittleTrafficToASlowInstance() async throws {
        let ewma = try await sharesOfTheSlowInstance(loadBalancer: "ewma")
        #expect(ewma.slow + ewma.fast == 60)
        #expect(ewma.slow <= 6, "the slow instance got \(ewma.slow) of 60")
        let leastRequest = try await sharesOfTheSlowInstance(loadBalancer: "leastRequest")
        #expect(leastRequest.slow >= 15, "least-request spreads sequential requests: slow got \(leastRequest.slow) of 60")
    }
}
