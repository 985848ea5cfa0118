import Synchronization

/// The in-flight counts of one destination's circuit breaker, shared by every event loop so
/// `maxRequests` and `maxRetries` hold exactly for the process (not per loop).
///
/// Lock-free: an acquire is a compare-and-swap that only succeeds below the limit the caller
/// passes (the loop's current `CircuitBreakerThresholds`), a release a decrement. Made once
/// per destination by `SharedLimits` (off the hot path) and kept across config snapshots, so
/// releases of requests admitted under an old snapshot still land here.
public final class CircuitBreakerCounters: Sendable {
    private let requests = Atomic<Int>(0)
    private let retries = Atomic<Int>(0)
    private let reportedOpen = Atomic<Bool>(false)

    public init() {}

    public func count(_ resource: CircuitBreaker.Resource) -> Int {
        switch resource {
        case .requests: requests.load(ordering: .relaxed)
        case .retries: retries.load(ordering: .relaxed)
        case .connections, .pendingRequests: 0
        }
    }

    /// Takes one unit of `resource` if its count is below `limit`.
    public func tryAcquire(_ resource: CircuitBreaker.Resource, limit: Int) -> Bool {
        switch resource {
        case .requests: Self.tryIncrement(requests, below: limit)
        case .retries: Self.tryIncrement(retries, below: limit)
        case .connections, .pendingRequests: true
        }
    }

    /// Gives back one unit taken by a successful `tryAcquire(resource)`.
    public func release(_ resource: CircuitBreaker.Resource) {
        switch resource {
        case .requests: Self.decrement(requests)
        case .retries: Self.decrement(retries)
        case .connections, .pendingRequests: break
        }
    }

    /// Records `open` as reported; returns it when that changed the reported state.
    func takeOpenChange(_ open: Bool) -> Bool? {
        // A load first: the common case (no change) writes nothing to the shared line.
        guard reportedOpen.load(ordering: .relaxed) != open else { return nil }
        return reportedOpen.compareExchange(expected: !open, desired: open, ordering: .relaxed).exchanged ? open : nil
    }

    private static func tryIncrement(_ atomic: borrowing Atomic<Int>, below limit: Int) -> Bool {
        var current = atomic.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = atomic.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    private static func decrement(_ atomic: borrowing Atomic<Int>) {
        let before = atomic.subtract(1, ordering: .relaxed).oldValue
        assert(before > 0, "released more often than acquired")
        if before <= 0 { atomic.add(1, ordering: .relaxed) }
    }
}
