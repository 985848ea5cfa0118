import NIOCore
import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// Building per-destination state from a TrafficPolicy and carrying it across snapshots.
    @Suite struct DestinationResilienceTests {
        let a = HostPort(host: "10.0.0.1", port: 15006)
        let b = HostPort(host: "10.0.0.2", port: 15006)

        @Test func builtFromThePolicyPoolSplitAmongLoopsRequestsShared() {
            var policy = TrafficPolicy.default(service: "payments")
            policy.circuitBreaker.maxRequests = 100
            policy.circuitBreaker.maxConnections = 10
            let counters = CircuitBreakerCounters()
            let loop1 = DestinationResilience(policy: policy, endpoints: [a, b], loopCount: 2, breakerCounters: counters)
            let loop2 = DestinationResilience(policy: policy, endpoints: [a, b], loopCount: 2, breakerCounters: counters)
            #expect(loop1.breaker.limit(.requests) == 100)
            #expect(loop1.pool.connectionLimit == 5)
            #expect(loop1.outliers.endpointCount == 2)
            for _ in 0..<60 { _ = loop1.breaker.tryAcquireRequest() }
            var admitted = 0
            for _ in 0..<60 where loop2.breaker.tryAcquireRequest() == .admitted { admitted += 1 }
            #expect(admitted == 40)
        }

        @Test func updateKeepsInFlightCountsAndEjections() {
            let clock = ManualClock()
            var state = DestinationResilience(policy: .default(service: "payments"), endpoints: [a, b])
            #expect(state.breaker.tryAcquireRequest() == .admitted)
            for _ in 0..<5 { _ = state.outliers.record(.status(503), for: a, now: clock.now) }
            #expect(state.outliers.isEjected(a))
            var tighter = TrafficPolicy.default(service: "payments")
            tighter.circuitBreaker.maxRequests = 1
            tighter.circuitBreaker.maxConnections = 7
            #expect(state.update(policy: tighter, endpoints: [a, b]).isEmpty)
            #expect(state.breaker.tryAcquireRequest() == .rejected(.requests))
            #expect(state.pool.connectionLimit == 7)
            #expect(state.outliers.isEjected(a))
            #expect(state.update(policy: tighter, endpoints: [b]) == [.uneject(a)])
            state.breaker.releaseRequest()
            #expect(state.breaker.tryAcquireRequest() == .admitted)
        }

        @Test func theOutlierIntervalTickRunsOncePerInterval() {
            var clock = ManualClock()
            let endpoints = (1...10).map { HostPort(host: "10.0.0.\($0)", port: 15006) }
            var state = DestinationResilience(
                policy: .default(service: "payments"), endpoints: endpoints, now: clock.now)
            for _ in 0..<5 { _ = state.outliers.record(.connectFailure, for: endpoints[0], now: clock.now) }
            #expect(state.outliers.ejections(endpoints[0]) == 1)
            // The proxy ticks every second: un-ejection at 30 s, decay only on 10 s boundaries.
            var unejected: NIODeadline?
            for _ in 0..<39 {
                clock.advance(by: .seconds(1))
                if state.tickOutliers(now: clock.now) == [.uneject(endpoints[0])] { unejected = clock.now }
            }
            #expect(unejected == ManualClock().now + .seconds(30))
            #expect(state.outliers.ejections(endpoints[0]) == 1, "the 30 s tick returned it; no decay yet")
            clock.advance(by: .seconds(1))  // 40 s: an interval tick
            _ = state.tickOutliers(now: clock.now)
            #expect(state.outliers.ejections(endpoints[0]) == 0)
        }
    }
}
