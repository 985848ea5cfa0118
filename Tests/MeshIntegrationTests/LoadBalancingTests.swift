import Foundation
import MeshTestSupport
import Testing

/// `loadBalancer: ewma` against real sidecars: of two payments instances, the one whose app
/// answers 250 ms late gets few requests, while least-request (no load difference between
/// sequential requests) splits them about evenly. The delay is far above what a loaded test
/// machine adds to the fast app (which shares the test process's event loops): a peak on the
/// fast endpoint decays over 10 s, and a 40 ms delay let one hiccup starve it for the test.
@Suite(.serialized) struct LoadBalancingTests {
    func sharesOfTheSlowInstance(loadBalancer: String) async throws -> (slow: Int, fast: Int) {
        let fast = try await TestHTTPApp(name: "fast")
        let slow = try await TestHTTPApp(name: "slow", delay: 250)
        let mesh = try await PaymentsMesh(
            backends: [(fast, "speed: fast"), (slow, "speed: slow")],
            webResources: """
                  - { kind: TrafficPolicy, service: payments, loadBalancer: \(loadBalancer) }
                """, webArguments: ["--access-log", "off"])
        let statuses = try await mesh.run((0..<40).map { "http://payments/lb/\($0)" }, format: "%{http_code}\\n")
        #expect(statuses.filter { $0 == "200" }.count == 40, "\(statuses)")
        _ = mesh
        return (slow.requests, fast.requests)
    }

    @Test func ewmaSendsLittleTrafficToASlowInstance() async throws {
        let ewma = try await sharesOfTheSlowInstance(loadBalancer: "ewma")
        #expect(ewma.slow + ewma.fast == 40)
        #expect(ewma.slow <= 8, "the slow instance got \(ewma.slow) of 40")
        let leastRequest = try await sharesOfTheSlowInstance(loadBalancer: "leastRequest")
        #expect(leastRequest.slow >= 10, "least-request spreads sequential requests: slow got \(leastRequest.slow) of 40")
    }
}
