import Foundation
import MeshTestSupport
import Testing

/// Route fault injection's delay between real sidecars: the share of delayed requests, and a
/// delay that waits on a timer, so other requests on the same (single) event loop proceed.
@Suite(.serialized) final class FaultDelayTests {
    let app: TestHTTPApp
    let mesh: PaymentsMesh

    init() async throws {
        app = try await TestHTTPApp(name: "payments")
        mesh = try await PaymentsMesh(backends: [(app, "version: v1")], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /half }
                    fault: { delay: { percent: 50, duration: 200ms } }
                  - match: { pathPrefix: /all }
                    fault: { delay: { percent: 100, duration: 300ms } }
            """)
    }

    @Test func aboutHalfTheRequestsAreDelayedByAtLeast200ms() async throws {
        let lines = try await mesh.run((0..<60).map { "http://payments/half/\($0)" })
        #expect(lines.count == 60 && lines.allSatisfy { $0.hasPrefix("200 ") }, "\(lines)")
        let delayed = lines.filter { ($0.split(separator: " ").last.flatMap { Double($0) } ?? 0) >= 0.2 }.count
        // 30 expected; ±15 is almost 4 standard deviations.
        #expect((15...45).contains(delayed), "\(delayed) of 60 took ≥ 200 ms: \(lines)")
    }

    @Test func delayedRequestsWaitTogetherNotInTurn() async throws {
        let started = ContinuousClock.now
        let lines = try await mesh.run(
            (0..<30).map { "http://payments/all/\($0)" }, extra: ["--parallel", "--parallel-immediate", "--parallel-max", "30"])
        let elapsed = started.duration(to: .now)
        #expect(lines.count == 30 && lines.allSatisfy { $0.hasPrefix("200 ") }, "\(lines)")
        #expect(lines.allSatisfy { ($0.split(separator: " ").last.flatMap { Double($0) } ?? 0) >= 0.3 }, "\(lines)")
        // In turn (a blocked event loop) 30 × 300 ms would take 9 s; on timers about 0.3 s.
        #expect(elapsed < .seconds(4), "\(elapsed)")
        #expect(app.requests == 30)
    }
}
