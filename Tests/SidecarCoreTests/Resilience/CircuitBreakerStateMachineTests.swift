import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// Envoy's breaker: four concurrency limits, overflow refused, "open" while any is full.
    @Suite struct CircuitBreakerStateMachineTests {
        @Test func defaultsAreEnvoys() {
            let breaker = CircuitBreakerStateMachine(MeshDefaults.circuitBreaker)
            #expect(breaker.limit(.connections) == 1024)
            #expect(breaker.limit(.pendingRequests) == 1024)
            #expect(breaker.limit(.requests) == 1024)
            #expect(breaker.limit(.retries) == 3)
            #expect(!breaker.isOpen)
        }

        @Test func requestsOverTheLimitAreRejectedUntilReleased() {
            var breaker = CircuitBreakerStateMachine(
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

        @Test func eachResourceHasItsOwnLimit() {
            var breaker = CircuitBreakerStateMachine(
                CircuitBreakerThresholds(maxConnections: 1, maxPendingRequests: 2, maxRequests: 5, maxRetries: 3))
            #expect(breaker.tryAcquire(.connections) == .admitted)
            #expect(breaker.tryAcquire(.connections) == .rejected(.connections))
            #expect(breaker.isAtLimit(.connections))
            #expect(breaker.isOpen)
            #expect(breaker.tryAcquire(.pendingRequests) == .admitted)
            #expect(breaker.tryAcquire(.pendingRequests) == .admitted)
            #expect(breaker.tryAcquire(.pendingRequests) == .rejected(.pendingRequests))
            for _ in 0..<3 { #expect(breaker.tryAcquireRetry() == .admitted) }
            #expect(breaker.tryAcquireRetry() == .rejected(.retries))
            #expect(breaker.tryAcquireRequest() == .admitted)  // requests unaffected
            breaker.release(.connections)
            breaker.release(.pendingRequests)
            breaker.releaseRetry()
            #expect(!breaker.isOpen)
            #expect(breaker.count(.pendingRequests) == 1)
            #expect(breaker.count(.retries) == 2)
        }

        @Test func limitsAreSplitAmongLoops() {
            let breaker = CircuitBreakerStateMachine(
                CircuitBreakerThresholds(maxConnections: 1024, maxPendingRequests: 1, maxRequests: 100, maxRetries: 3),
                loopCount: 2)
            #expect(breaker.limit(.connections) == 512)
            #expect(breaker.limit(.pendingRequests) == 1)
            #expect(breaker.limit(.requests) == 50)
            #expect(breaker.limit(.retries) == 2)
        }

        @Test func zeroMaxRetriesAllowsNoRetry() {
            var breaker = CircuitBreakerStateMachine(
                CircuitBreakerThresholds(maxConnections: 5, maxPendingRequests: 5, maxRequests: 5, maxRetries: 0),
                loopCount: 4)
            #expect(breaker.tryAcquireRetry() == .rejected(.retries))
            #expect(!breaker.isOpen)
            #expect(breaker.limit(.requests) == 2)
            #expect(breaker.tryAcquireRequest() == .admitted)
        }
    }
}
