import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// Envoy's breaker: request and retry limits, overflow refused, "open" while one is full;
    /// the counts shared by every loop, so the limits are exact for the process.
    @Suite struct CircuitBreakerTests {
        @Test func defaultsAreEnvoys() {
            let breaker = CircuitBreaker(MeshDefaults.circuitBreaker)
            #expect(breaker.limit(.connections) == 1024)
            #expect(breaker.limit(.pendingRequests) == 1024)
            #expect(breaker.limit(.requests) == 1024)
            #expect(breaker.limit(.retries) == 3)
            #expect(!breaker.isOpen)
        }

        @Test func requestsOverTheLimitAreRejectedUntilReleased() {
            let breaker = CircuitBreaker(
                CircuitBreakerThresholds(maxConnections: 10, maxPendingRequests: 10, maxRequests: 100, maxRetries: 3))
            var admitted = 0, rejected = 0
            for _ in 0..<1100 {
                switch breaker.tryAcquireRequest() {
                case .admitted: admitted += 1
                case .rejected(let resource):
                    #expect(resource == .requests)
                    rejected += 1
                }
            }
            #expect(admitted == 100)
            #expect(rejected == 1000)
            #expect(breaker.isOpen)
            #expect(breaker.takeOpenChange() == true)
            #expect(breaker.takeOpenChange() == nil)
            breaker.releaseRequest()
            #expect(!breaker.isOpen)
            #expect(breaker.takeOpenChange() == false)
            #expect(breaker.tryAcquireRequest() == .admitted)
            #expect(breaker.tryAcquireRequest() == .rejected(.requests))
            #expect(breaker.count(.requests) == 100)
        }

        @Test func loopsShareTheCountsSoTheLimitIsExact() async {
            // One breaker value per loop over the same counters, as LoopContext builds them.
            let counters = CircuitBreakerCounters()
            let thresholds = CircuitBreakerThresholds(
                maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 100, maxRetries: 3)
            let admitted = await withTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let breaker = CircuitBreaker(thresholds, counters: counters)
                        var admitted = 0
                        for _ in 0..<1000 where breaker.tryAcquireRequest() == .admitted { admitted += 1 }
                        return admitted
                    }
                }
                return await group.reduce(0, +)
            }
            #expect(admitted == 100)
            #expect(counters.count(.requests) == 100)
            let other = CircuitBreaker(thresholds, counters: counters)
            #expect(other.isOpen)
            other.releaseRequest()
            #expect(CircuitBreaker(thresholds, counters: counters).tryAcquireRequest() == .admitted)
        }

        @Test func retriesHaveTheirOwnLimitAndZeroAllowsNone() {
            let breaker = CircuitBreaker(
                CircuitBreakerThresholds(maxConnections: 1, maxPendingRequests: 2, maxRequests: 5, maxRetries: 3))
            for _ in 0..<3 { #expect(breaker.tryAcquireRetry() == .admitted) }
            #expect(breaker.tryAcquireRetry() == .rejected(.retries))
            #expect(breaker.isOpen)
            #expect(breaker.tryAcquireRequest() == .admitted)  // requests unaffected
            breaker.releaseRetry()
            #expect(!breaker.isOpen)
            #expect(breaker.count(.retries) == 2)

            let none = CircuitBreaker(
                CircuitBreakerThresholds(maxConnections: 5, maxPendingRequests: 5, maxRequests: 5, maxRetries: 0))
            #expect(none.tryAcquireRetry() == .rejected(.retries))
            #expect(!none.isOpen)
        }

        @Test func aLoweredLimitAdmitsNothingUntilInFlightDrains() {
            var breaker = CircuitBreaker(MeshDefaults.circuitBreaker)
            for _ in 0..<3 { #expect(breaker.tryAcquireRequest() == .admitted) }
            breaker.thresholds.maxRequests = 2
            #expect(breaker.tryAcquireRequest() == .rejected(.requests))
            breaker.releaseRequest()
            breaker.releaseRequest()
            #expect(breaker.tryAcquireRequest() == .admitted)
        }
    }
}
