import NIOCore
import Synchronization

/// The limits every event loop of the process shares: one `CircuitBreakerCounters` and one
/// `RetryWindowCounters` per destination, and one `SharedTokenBucket` per rate limit (a route rule's, the local
/// service's inbound one, or one per caller with `perCaller`), so the configured numbers hold
/// for the process whichever loop the traffic lands on.
///
/// Threading: a `Mutex` guards the maps, and it is taken only on a loop's first use of a key
/// (each loop's `Cluster` keeps the references it got); the per-request work is on the
/// returned objects' atomics. A bucket's key includes its limit, so a changed limit starts a
/// new (full) bucket and an unchanged one keeps its state across config snapshots.
///
/// Bounded: beyond `capacity` buckets, the full ones (indistinguishable from new) are
/// forgotten first, then arbitrary ones; a loop that still holds a forgotten bucket errs on
/// the permissive side until its cache is refreshed. Callers are mesh services, so the bound
/// is rarely reached.
public final class SharedLimits: Sendable {
    /// Identifies one rate limit: what it applies to and its numbers.
    public struct BucketKey: Hashable, Sendable {
        public var scope: String
        public var rule: Int
        public var caller: String
        public var limit: RateLimitNumbers

        public init(scope: String, rule: Int = -1, caller: String = "", limit: RateLimit) {
            self.scope = scope
            self.rule = rule
            self.caller = caller
            self.limit = RateLimitNumbers(requestsPerSecond: limit.requestsPerSecond, burst: limit.burst)
        }
    }

    public struct RateLimitNumbers: Hashable, Sendable {
        public var requestsPerSecond: Int
        public var burst: Int
    }

    private struct State {
        var breakers: [String: CircuitBreakerCounters] = [:]
        var retryWindows: [String: RetryWindowCounters] = [:]
        var buckets: [BucketKey: SharedTokenBucket] = [:]
    }

    public let capacity: Int
    private let state = Mutex(State())
    /// Outlier ejections across loops, for `sidecar_endpoints` (not a limit, but shared alike).
    public let ejections = EjectionLedger()

    public init(capacity: Int = 4096) {
        self.capacity = Swift.max(1, capacity)
    }

    /// The breaker counts of `service`, made on first use.
    public func breakerCounters(for service: String) -> CircuitBreakerCounters {
        state.withLock { state in
            if let counters = state.breakers[service] { return counters }
            let counters = CircuitBreakerCounters()
            state.breakers[service] = counters
            return counters
        }
    }

    /// The retry budget's request and retry counts of `service`, made on first use.
    public func retryWindow(for service: String) -> RetryWindowCounters {
        state.withLock { state in
            if let window = state.retryWindows[service] { return window }
            let window = RetryWindowCounters()
            state.retryWindows[service] = window
            return window
        }
    }

    /// The bucket for `key`, made (full) on first use.
    public func bucket(_ key: BucketKey, now: NIODeadline) -> SharedTokenBucket {
        state.withLock { state in
            if let bucket = state.buckets[key] { return bucket }
            if state.buckets.count >= capacity {
                state.buckets = state.buckets.filter { !$0.value.isFull(now: now) }
                if state.buckets.count >= capacity, let victim = state.buckets.keys.first {
                    state.buckets[victim] = nil
                }
            }
            let bucket = SharedTokenBucket(
                RateLimit(requestsPerSecond: key.limit.requestsPerSecond, burst: key.limit.burst))
            state.buckets[key] = bucket
            return bucket
        }
    }

    public var bucketCount: Int { state.withLock { $0.buckets.count } }
}

