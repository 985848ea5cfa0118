import NIOCore

/// One `TokenBucket` per key (the caller's service, for a TrafficPolicy rate limit with
/// `perCaller`), in a map bounded to `capacity` keys so callers cannot grow it without end.
///
/// Eviction when a new key arrives at capacity: first every key whose bucket is full (it is
/// indistinguishable from a new bucket, so forgetting it changes no decision), and only if
/// none is, one arbitrary key, which thereby gets a fresh (full) bucket: under key churn
/// beyond `capacity` the limit errs on the permissive side. Callers are mesh services, so
/// the bound is rarely reached.
///
/// A pure value with time as a parameter; one per destination per event loop, no locks. Only
/// a new key allocates (a map entry).
public struct KeyedTokenBuckets<Key: Hashable & Sendable>: Sendable {
    public let capacity: Int
    private let template: TokenBucket
    private var tats: [Key: UInt64] = [:]

    public init(_ limit: RateLimit, capacity: Int = 1024, loopCount: Int = 1) {
        self.capacity = Swift.max(1, capacity)
        self.template = TokenBucket(limit, loopCount: loopCount)
    }

    public var count: Int { tats.count }

    public mutating func tryTake(_ key: Key, now: NIODeadline) -> TokenBucket.Decision {
        let nanos = now.uptimeNanoseconds
        if tats[key] == nil, tats.count >= capacity { evict(now: nanos) }
        let interval = template.interval, tolerance = template.tolerance
        return TokenBucket.take(tat: &tats[key, default: 0], now: nanos, interval: interval, tolerance: tolerance)
    }

    private mutating func evict(now: UInt64) {
        tats = tats.filter { $0.value > now }
        if tats.count >= capacity, let victim = tats.keys.first {
            tats[victim] = nil
        }
    }
}
