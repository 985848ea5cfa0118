/// The circuit breaker of one destination, with Envoy's meaning: not a tripped/reset state
/// but four concurrency limits. A request, connection, pending request or retry is admitted
/// only while its counter is below its threshold; overflow is refused at once (the proxy
/// answers 503 `circuit-open`, or the TrafficPolicy's `fallback`). The breaker is "open"
/// while any counter is at its limit (`sidecar_circuit_breaker_open`).
///
/// Invariants: each counter stays within `0...limit`; every admitted `tryAcquire` is matched
/// by exactly one `release` of the same resource (releasing below zero is a caller bug and
/// traps in debug builds, clamps in release).
///
/// A pure value, one per destination per event loop (no locks, no allocation). Limits are
/// per instance: build it with `loopCount` to split a service-wide limit among loops.
public struct CircuitBreakerStateMachine: Sendable {
    /// The four limited resources, as in Envoy's `circuit_breakers.thresholds`.
    public enum Resource: Int, Sendable, CaseIterable, CustomStringConvertible {
        /// Upstream connections open (pooled ones included).
        case connections
        /// Requests waiting for a connection (a lease in progress).
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

    private var limits: (Int, Int, Int, Int)
    private var counts: (Int, Int, Int, Int) = (0, 0, 0, 0)
    private var reportedOpen = false

    /// - Parameter loopCount: the number of event loops holding one breaker each for this
    ///   destination; each gets `ceil(limit / loopCount)`, so a non-zero limit stays at
    ///   least 1 per loop and a zero limit (`maxRetries: 0`, no retries) stays zero.
    public init(_ thresholds: CircuitBreakerThresholds, loopCount: Int = 1) {
        let loops = Swift.max(1, loopCount)
        func share(_ limit: Int) -> Int { (Swift.max(0, limit) + loops - 1) / loops }
        limits = (
            share(thresholds.maxConnections), share(thresholds.maxPendingRequests),
            share(thresholds.maxRequests), share(thresholds.maxRetries)
        )
    }

    /// New thresholds from a config snapshot; the counts of what is in flight are kept (their
    /// releases still come), so a lowered limit simply admits nothing until they drain.
    public mutating func setThresholds(_ thresholds: CircuitBreakerThresholds, loopCount: Int = 1) {
        limits = CircuitBreakerStateMachine(thresholds, loopCount: loopCount).limits
    }

    public func limit(_ resource: Resource) -> Int {
        switch resource {
        case .connections: limits.0
        case .pendingRequests: limits.1
        case .requests: limits.2
        case .retries: limits.3
        }
    }

    public func count(_ resource: Resource) -> Int {
        switch resource {
        case .connections: counts.0
        case .pendingRequests: counts.1
        case .requests: counts.2
        case .retries: counts.3
        }
    }

    private mutating func add(_ resource: Resource, _ delta: Int) {
        switch resource {
        case .connections: counts.0 += delta
        case .pendingRequests: counts.1 += delta
        case .requests: counts.2 += delta
        case .retries: counts.3 += delta
        }
    }

    /// Takes one unit of `resource` if below its limit.
    public mutating func tryAcquire(_ resource: Resource) -> Admission {
        guard count(resource) < limit(resource) else { return .rejected(resource) }
        add(resource, 1)
        return .admitted
    }

    /// Gives back one unit taken by an admitted `tryAcquire(resource)`.
    public mutating func release(_ resource: Resource) {
        assert(count(resource) > 0, "released \(resource) more often than acquired")
        if count(resource) > 0 { add(resource, -1) }
    }

    /// Before routing a request to the destination (before the lease).
    public mutating func tryAcquireRequest() -> Admission { tryAcquire(.requests) }
    /// When the request's response ended or it failed (once per admitted request).
    public mutating func releaseRequest() { release(.requests) }
    /// When `RetryStateMachine` says `.retry`; rejected: give up with the last failure.
    public mutating func tryAcquireRetry() -> Admission { tryAcquire(.retries) }
    public mutating func releaseRetry() { release(.retries) }

    /// Whether `resource` is at its limit (the next acquire would be rejected).
    public func isAtLimit(_ resource: Resource) -> Bool { count(resource) >= limit(resource) }

    /// Any non-zero limit reached: the value of `sidecar_circuit_breaker_open`. (A zero
    /// limit, `maxRetries: 0`, is a setting, not an overflow, and never opens the breaker.)
    public var isOpen: Bool {
        func full(_ count: Int, _ limit: Int) -> Bool { limit > 0 && count >= limit }
        return full(counts.0, limits.0) || full(counts.1, limits.1) || full(counts.2, limits.2)
            || full(counts.3, limits.3)
    }

    /// The new `isOpen` if it changed since the last call, else nil: the proxy turns it into
    /// `gauge.increment()` / `decrement()` so a per-peer gauge shared by loops reads > 0
    /// while any loop's breaker is open (exactly 0/1 with one loop).
    public mutating func takeOpenChange() -> Bool? {
        let open = isOpen
        guard open != reportedOpen else { return nil }
        reportedOpen = open
        return open
    }
}
