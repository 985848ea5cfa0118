import NIOCore

/// One event loop's handles on the process-wide rate limits (`SharedLimits`): the route
/// rules' outbound limits and the local service's inbound limit, shared or per caller.
///
/// The decision itself is the shared bucket's (lock-free, exact across loops); this value
/// only remembers the buckets this loop already looked up, so the shared map's lock is taken
/// once per key per loop, never per request. Confined to its loop.
struct LoopRateLimiters {
    private struct RuleKey: Hashable {
        var service: String
        var rule: Int
    }

    let shared: SharedLimits
    /// Callers remembered per loop before the cache starts over (the shared map keeps them).
    let callerCacheLimit = 1024
    private var rules: [RuleKey: SharedTokenBucket] = [:]
    private var inboundLimit: RateLimit?
    private var inbound: SharedTokenBucket?
    private var callers: [String: SharedTokenBucket] = [:]

    init(shared: SharedLimits) {
        self.shared = shared
    }

    /// A new route table: rule positions and limits may have changed. Buckets whose limit is
    /// unchanged come back from the shared map with their state.
    mutating func tableReplaced() {
        rules.removeAll(keepingCapacity: true)
    }

    /// The route rule's own rate limit (outbound), keyed by destination and rule position;
    /// `peek` answers what taking would, taking nothing (`/explain`).
    mutating func takeRuleToken(
        service: String, ruleIndex: Int, limit: RateLimit, now: NIODeadline, peek: Bool = false
    ) -> TokenBucket.Decision {
        let key = RuleKey(service: service, rule: ruleIndex)
        let bucket: SharedTokenBucket
        if let known = rules[key] {
            bucket = known
        } else {
            bucket = shared.bucket(.init(scope: "route:" + service, rule: ruleIndex, limit: limit), now: now)
            rules[key] = bucket
        }
        return peek ? bucket.peek(now: now) : bucket.tryTake(now: now)
    }

    /// The local service's TrafficPolicy rate limit, enforced on inbound (optionally per caller).
    mutating func takeInboundToken(limit: RateLimit?, caller: String, now: NIODeadline) -> TokenBucket.Decision {
        guard let limit else { return .allowed }
        if limit != inboundLimit {
            inboundLimit = limit
            inbound = nil
            callers.removeAll()
        }
        if !limit.perCaller {
            if inbound == nil { inbound = shared.bucket(.init(scope: "inbound", limit: limit), now: now) }
            return inbound!.tryTake(now: now)
        }
        if let bucket = callers[caller] { return bucket.tryTake(now: now) }
        if callers.count >= callerCacheLimit { callers.removeAll(keepingCapacity: true) }
        let bucket = shared.bucket(.init(scope: "inbound", caller: caller, limit: limit), now: now)
        callers[caller] = bucket
        return bucket.tryTake(now: now)
    }
}
