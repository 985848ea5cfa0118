import Foundation
import MeshTestSupport
import Testing

/// `loadBalancer: ewma` against real sidecars: of two payments instances, the one whose app
/// answers a second late gets almost no requests (least-request would split sequential
/// requests about evenly: no load difference between them; `LoadBalancerTests` shows both).
/// The delay is far above what a loaded test machine adds to the fast app, which shares the
/// test process's event loops with the parallel suites: a peak on the fast endpoint decays
/// over 10 s, and a 40 ms delay let one hiccup there starve it for the whole test. A fresh-clone
/// CI run saw 12 of 30 at a 1 s delay (the fast app stalled for about that long beside the
/// parallel suites), so the slow instance is now 2.5 s late.
@Suite(.serialized) struct LoadBalancingTests {
    @Test func ewmaSendsLittleTrafficToASlowInstance() async throws {
        let fast = try await TestHTTPApp(name: "fast")
        let slow = try await TestHTTPApp(name: "slow", delay: 2500)
        let mesh = try await PaymentsMesh(
            backends: [(fast, "speed: fast"), (slow, "speed: slow")],
            webResources: """
                  - { kind: TrafficPolicy, service: payments, loadBalancer: ewma }
                """, webArguments: ["--access-log", "off"])
        let statuses = try await mesh.run((0..<30).map { "http://payments/lb/\($0)" }, format: "%{http_code}\\n")
        #expect(statuses.filter { $0 == "200" }.count == 30, "\(statuses)")
        #expect(slow.requests + fast.requests == 30)
        #expect(slow.requests <= 10, "the slow instance got \(slow.requests) of 30 (least-request: about 15)")
    }
}
