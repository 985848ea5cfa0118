/// A local token-bucket rate limit: `requestsPerSecond` refill, `burst` capacity.
///
/// On a Route rule it is enforced on the caller's outbound; on a TrafficPolicy by each
/// destination sidecar on inbound, shared by all callers or, with `perCaller`, one bucket each.
public struct RateLimit: Sendable, Hashable {
    /// At least 1.
    public var requestsPerSecond: Int
    /// At least 1; defaults to `requestsPerSecond`.
    public var burst: Int
    /// Only meaningful on a TrafficPolicy; always false on a Route rule.
    public var perCaller: Bool

    public init(requestsPerSecond: Int, burst: Int? = nil, perCaller: Bool = false) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst ?? requestsPerSecond
        self.perCaller = perCaller
    }
}
