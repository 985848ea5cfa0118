import NIOCore

/// All resilience state one event loop keeps for one destination service: its circuit
/// breaker, connection pool limits, retry budget and outlier detector, built from the
/// service's `TrafficPolicy` and carried across config snapshots by `update`.
///
/// Each loop holds one per destination in its `Cluster` (confined to the loop, so no
/// locks) and calls the members directly; this type only builds them and keeps them
/// consistent when the policy or the endpoint set changes. The breaker's request and retry
/// counts and the retry budget's window are shared by all loops (the numbers hold for the
/// process); the pool limits are split among `loopCount` loops (connections belong to a loop).
public struct DestinationResilience: Sendable {
    public private(set) var policy: TrafficPolicy
    public let loopCount: Int
    public var breaker: CircuitBreaker
    public var pool: ConnectionPoolStateMachine<HostPort>
    public var retryBudget: RetryBudgetStateMachine
    public var outliers: OutlierDetectorStateMachine<HostPort>
    /// When the outlier detector last ran its `interval` tick.
    public var lastIntervalTick: NIODeadline

    public init(
        policy: TrafficPolicy, endpoints: [HostPort], loopCount: Int = 1,
        breakerCounters: CircuitBreakerCounters = CircuitBreakerCounters(),
        retryWindow: RetryWindowCounters = RetryWindowCounters(), now: NIODeadline = .now()
    ) {
        self.policy = policy
        self.loopCount = Swift.max(1, loopCount)
        breaker = CircuitBreaker(policy.circuitBreaker, counters: breakerCounters)
        pool = ConnectionPoolStateMachine(policy.circuitBreaker, loopCount: loopCount)
        retryBudget = RetryBudgetStateMachine(policy.retryBudget, window: retryWindow)
        outliers = OutlierDetectorStateMachine(policy.outlierDetection, endpoints: endpoints)
        lastIntervalTick = now
    }

    /// A new snapshot for the same service: in-flight breaker counts, open connections, the
    /// retry window, outlier counts and ejections of kept endpoints survive. Returns
    /// un-ejections of removed endpoints (for the gauges).
    public mutating func update(
        policy new: TrafficPolicy, endpoints: [HostPort]
    ) -> [OutlierDetectorStateMachine<HostPort>.Action] {
        if new.circuitBreaker != policy.circuitBreaker {
            breaker.thresholds = new.circuitBreaker
            pool.setThresholds(new.circuitBreaker, loopCount: loopCount)
        }
        if new.retryBudget != policy.retryBudget {
            retryBudget = RetryBudgetStateMachine(new.retryBudget, window: retryBudget.window)
        }
        if new.outlierDetection != policy.outlierDetection { outliers.setConfig(new.outlierDetection) }
        policy = new
        return outliers.setEndpoints(endpoints)
    }

    /// The breaker's and the pool's open/closed changes since the last call (for the gauge).
    public mutating func takeOpenChanges() -> (breaker: Bool?, pool: Bool?) {
        (breaker.takeOpenChange(), pool.takeOpenChange())
    }

    /// The outlier detector while it ejects anything (the balancer must filter), else nil.
    /// `mutating` only so the proxy reaches it through the dictionary in place: the common
    /// case, nothing ejected, then copies nothing per request.
    public mutating func outliersWhileEjecting() -> OutlierDetectorStateMachine<HostPort>? {
        outliers.ejectedCount > 0 ? outliers : nil
    }

    /// The outlier detector's timer (the proxy calls it about once a second): un-ejects the
    /// endpoints whose time is up, and once per `outlierDetection.interval` also runs the
    /// interval tick (ejection multipliers of healthy endpoints decay).
    public mutating func tickOutliers(now: NIODeadline) -> [OutlierDetectorStateMachine<HostPort>.Action] {
        let isInterval = now >= lastIntervalTick + policy.outlierDetection.interval.timeAmount
        if isInterval { lastIntervalTick = now }
        return outliers.tick(now: now, isIntervalTick: isInterval)
    }
}
