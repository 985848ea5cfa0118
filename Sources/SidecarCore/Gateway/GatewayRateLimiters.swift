import NIOCore

/// One event loop's handles on the gateway's keyed rate limits: one `SharedTokenBucket` per
/// (route, rule, key, limit) in the process-wide `SharedLimits`, so a client's limit holds
/// whichever loop its connections land on. This value only remembers the buckets the loop
/// already looked up (bounded: it starts over past `cacheLimit` keys), so the shared map's
/// lock is taken on a key's first request on this loop, not on every request.
/// Confined to its loop.
struct GatewayRateLimiters {
    private struct Key: Hashable {
        var route: String
        var rule: Int
        var key: String
        var limit: RateLimit
    }

    let shared: SharedLimits
    let cacheLimit = 4096
    private var buckets: [Key: SharedTokenBucket] = [:]

    init(shared: SharedLimits) {
        self.shared = shared
    }

    /// Takes a token for `key` under the rule's limit; `peek` answers without taking.
    mutating func take(
        route: String, ruleIndex: Int, key: String, limit: RateLimit, now: NIODeadline, peek: Bool = false
    ) -> TokenBucket.Decision {
        let cacheKey = Key(route: route, rule: ruleIndex, key: key, limit: limit)
        let bucket: SharedTokenBucket
        if let known = buckets[cacheKey] {
            bucket = known
        } else {
            if buckets.count >= cacheLimit { buckets.removeAll(keepingCapacity: true) }
            bucket = shared.bucket(.init(scope: "gateway:" + route, rule: ruleIndex, caller: key, limit: limit), now: now)
            buckets[cacheKey] = bucket
        }
        return peek ? bucket.peek(now: now) : bucket.tryTake(now: now)
    }
}
