import NIOCore

/// All resilience state one event loop keeps for one destination service: its circuit
/// breaker, retry budget, outlier detector and (on inbound) rate limit, built from the
/// service's `TrafficPolicy` and carried across config snapshots by `update`.
///
/// The proxy holds one per destination in its `ProxyLoopState` (confined to the loop, so no
/// locks) and calls the members directly; this type only builds them and keeps them
/// consistent when the policy or the endpoint set changes. Limits are split among
/// `loopCount` loops so the service-wide numbers hold with several loops.
public struct DestinationResilience: Sendable {
    public private(set) var policy: TrafficPolicy
    public let loopCount: Int
    public var breaker: CircuitBreakerStateMachine
    public var retryBudget: RetryBudgetStateMachine
    public var outliers: OutlierDetectorStateMachine<HostPort>
    /// The TrafficPolicy's inbound limit shared by all callers (nil: none, or per caller).
    public var rateLimit: TokenBucket?
    /// The TrafficPolicy's inbound limit with `perCaller`, keyed by calling service.
    public var callerRateLimits: KeyedTokenBuckets<String>?

    public init(policy: TrafficPolicy, endpoints: [HostPort], loopCount: Int = 1) {
        self.policy = policy
        self.loopCount = Swift.max(1, loopCount)
        breaker = CircuitBreakerStateMachine(policy.circuitBreaker, loopCount: loopCount)
        retryBudget = RetryBudgetStateMachine(policy.retryBudget, loopCount: loopCount)
        outliers = OutlierDetectorStateMachine(policy.outlierDetection, endpoints: endpoints)
        (rateLimit, callerRateLimits) = Self.rateLimiters(policy.rateLimit, loopCount: loopCount)
    }

    /// A new snapshot for the same service: in-flight breaker counts, the retry window,
    /// outlier counts and ejections of kept endpoints survive; rate limiters are rebuilt only
    /// when their limit changed. Returns un-ejections of removed endpoints (for the gauges).
    public mutating func update(
        policy new: TrafficPolicy, endpoints: [HostPort]
    ) -> [OutlierDetectorStateMachine<HostPort>.Action] {
        if new.circuitBreaker != policy.circuitBreaker { breaker.setThresholds(new.circuitBreaker, loopCount: loopCount) }
        if new.retryBudget != policy.retryBudget { retryBudget = RetryBudgetStateMachine(new.retryBudget, loopCount: loopCount) }
        if new.outlierDetection != policy.outlierDetection { outliers.setConfig(new.outlierDetection) }
        if new.rateLimit != policy.rateLimit {
            (rateLimit, callerRateLimits) = Self.rateLimiters(new.rateLimit, loopCount: loopCount)
        }
        policy = new
        return outliers.setEndpoints(endpoints)
    }

    /// The inbound rate-limit decision for a request from `caller` (always allowed without a limit).
    public mutating func takeRateLimitToken(caller: String, now: NIODeadline) -> TokenBucket.Decision {
        if rateLimit != nil { return rateLimit!.tryTake(now: now) }
        if callerRateLimits != nil { return callerRateLimits!.tryTake(caller, now: now) }
        return .allowed
    }

    private static func rateLimiters(
        _ limit: RateLimit?, loopCount: Int
    ) -> (TokenBucket?, KeyedTokenBuckets<String>?) {
        guard let limit else { return (nil, nil) }
        if limit.perCaller { return (nil, KeyedTokenBuckets(limit, loopCount: loopCount)) }
        return (TokenBucket(limit, loopCount: loopCount), nil)
    }
}
