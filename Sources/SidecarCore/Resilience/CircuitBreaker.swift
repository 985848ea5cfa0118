/// The circuit breaker of one destination, with Envoy's meaning: not a tripped/reset state
/// but concurrency limits. A request or retry is admitted only while its counter is below its
/// threshold; overflow is refused at once (the proxy answers 503 `circuit-open`, or the
/// TrafficPolicy's `fallback`). The breaker is "open" while any counter is at its limit
/// (`sidecar_circuit_breaker_open`).
///
/// `maxRequests` and `maxRetries` are exact for the whole process: the counts live in one
/// `CircuitBreakerCounters` shared by every event loop (atomics, no lock), and this value
/// carries the loop's current thresholds with it. `maxConnections` and `maxPendingRequests`
/// are about connections, which belong to one loop: `ConnectionPoolStateMachine` enforces
/// them per loop (see there for how they divide).
///
/// Invariants: every admitted `tryAcquire` is matched by exactly one `release` of the same
/// resource. A lowered limit keeps what is in flight and admits nothing until it drains.
public struct CircuitBreaker: Sendable {
    /// The four limited resources, as in Envoy's `circuit_breakers.thresholds`.
    public enum Resource: Int, Sendable, CaseIterable, CustomStringConvertible {
        /// Upstream connections open (pooled ones included); per loop, in the pool.
        case connections
        /// Requests waiting for a connection; per loop, in the pool.
        case pendingRequests
        /// Requests in flight to the destination (from admission to the end of the response).
        case requests
        /// Retries in flight (from `.retry` until that try ends).
        case retries

        public var description: String {
            switch self {
            case .connections: "max-connections"
            case .pendingRequests: "max-pending-requests"
            case .requests: "max-requests"
            case .retries: "max-retries"
            }
        }
    }

    public enum Admission: Sendable, Equatable {
        case admitted
        /// The limit of this resource is reached.
        case rejected(Resource)
    }

    public var thresholds: CircuitBreakerThresholds
    /// Shared by every loop's breaker of this destination.
    public let counters: CircuitBreakerCounters

    public init(_ thresholds: CircuitBreakerThresholds, counters: CircuitBreakerCounters = CircuitBreakerCounters()) {
        self.thresholds = thresholds
        self.counters = counters
    }

    public func limit(_ resource: Resource) -> Int {
        switch resource {
        case .connections: thresholds.maxConnections
        case .pendingRequests: thresholds.maxPendingRequests
        case .requests: thresholds.maxRequests
        case .retries: thresholds.maxRetries
        }
    }

    public func count(_ resource: Resource) -> Int { counters.count(resource) }

    /// Before routing a request to the destination (before the lease).
    public func tryAcquireRequest() -> Admission {
        counters.tryAcquire(.requests, limit: thresholds.maxRequests) ? .admitted : .rejected(.requests)
    }

    /// When the request's response ended or it failed (once per admitted request).
    public func releaseRequest() { counters.release(.requests) }

    /// When `RetryStateMachine` says `.retry`; rejected: give up with the last failure.
    public func tryAcquireRetry() -> Admission {
        counters.tryAcquire(.retries, limit: thresholds.maxRetries) ? .admitted : .rejected(.retries)
    }

    public func releaseRetry() { counters.release(.retries) }

    /// A non-zero request or retry limit reached. (A zero limit, `maxRetries: 0`, is a
    /// setting, not an overflow, and never opens the breaker.)
    public var isOpen: Bool {
        func full(_ resource: Resource) -> Bool { limit(resource) > 0 && count(resource) >= limit(resource) }
        return full(.requests) || full(.retries)
    }

    /// The new `isOpen` if it changed since the last report by any loop, else nil: the proxy
    /// turns it into `gauge.increment()` / `decrement()`.
    public func takeOpenChange() -> Bool? { counters.takeOpenChange(isOpen) }
}
