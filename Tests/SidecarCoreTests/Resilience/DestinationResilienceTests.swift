import NIOCore
import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// Building per-destination state from a TrafficPolicy and carrying it across snapshots.
    @Suite struct DestinationResilienceTests {
        let a = HostPort(host: "10.0.0.1", port: 15006)
        let b = HostPort(host: "10.0.0.2", port: 15006)

        @Test func builtFromThePolicyAndSplitAmongLoops() {
            var policy = TrafficPolicy.default(service: "payments")
            policy.circuitBreaker.maxRequests = 100
            policy.rateLimit = RateLimit(requestsPerSecond: 10, burst: 2)
            var state = DestinationResilience(policy: policy, endpoints: [a, b], loopCount: 2)
            #expect(state.breaker.limit(.requests) == 50)
            #expect(state.outliers.endpointCount == 2)
            let now = ManualClock().now
            #expect(state.takeRateLimitToken(caller: "web", now: now) == .allowed)
            #expect(state.takeRateLimitToken(caller: "web", now: now) != .allowed)  // burst 2 / 2 loops
        }

        @Test func perCallerLimitsAndNoLimit() {
            var policy = TrafficPolicy.default(service: "payments")
            policy.rateLimit = RateLimit(requestsPerSecond: 1, burst: 1, perCaller: true)
            var state = DestinationResilience(policy: policy, endpoints: [a])
            let now = ManualClock().now
            #expect(state.takeRateLimitToken(caller: "web", now: now) == .allowed)
            #expect(state.takeRateLimitToken(caller: "web", now: now) != .allowed)
            #expect(state.takeRateLimitToken(caller: "api", now: now) == .allowed)
            var open = DestinationResilience(policy: .default(service: "x"), endpoints: [a])
            for _ in 0..<1000 { #expect(open.takeRateLimitToken(caller: "web", now: now) == .allowed) }
        }

        @Test func updateKeepsInFlightCountsAndEjections() {
            let clock = ManualClock()
            var state = DestinationResilience(policy: .default(service: "payments"), endpoints: [a, b])
            #expect(state.breaker.tryAcquireRequest() == .admitted)
            for _ in 0..<5 { _ = state.outliers.record(.status(503), for: a, now: clock.now) }
            #expect(state.outliers.isEjected(a))
            var tighter = TrafficPolicy.default(service: "payments")
            tighter.circuitBreaker.maxRequests = 1
            #expect(state.update(policy: tighter, endpoints: [a, b]).isEmpty)
            #expect(state.breaker.tryAcquireRequest() == .rejected(.requests))
            #expect(state.outliers.isEjected(a))
            #expect(state.update(policy: tighter, endpoints: [b]) == [.uneject(a)])
            state.breaker.releaseRequest()
            #expect(state.breaker.tryAcquireRequest() == .admitted)
        }
    }
}
