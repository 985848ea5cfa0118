import NIOCore

/// The retry budget of one destination: retries started within the last `window` (10 s) may
/// be at most `percent` of the requests started in it, plus a floor of `minPerSecond` for
/// every second of the window (linkerd's reserve), so a quiet service can still retry.
///
/// Counted in 1 s buckets on a ring (a sliding window at 1 s granularity): a bucket older than
/// the window is reset when its slot comes round again. Only downstream requests count as
/// requests (`requestStarted` once per request, not per try), so retries never pay for
/// retries. With the defaults (20 %, 10/s) a service whose every request fails sends at most
/// 1.2 × requests + 100 tries per 10 s.
///
/// A pure value with time as a parameter. One per destination per event loop (no locks): on
/// N loops the floor is N × minPerSecond unless built with `loopCount` (see `init`). The ring
/// is allocated once, at init; no allocation per request.
public struct RetryBudgetStateMachine: Sendable {
    public static let windowSeconds = 10
    private static let bucketNanos: UInt64 = 1_000_000_000

    private struct Bucket: Sendable {
        /// Which second (uptime / 1 s) the counts belong to.
        var second: UInt64 = .max
        var requests: Int = 0
        var retries: Int = 0
    }

    public let percent: Double
    /// The floor per second of window, already divided among loops.
    public let minPerSecond: Double
    private var buckets: [Bucket]

    /// - Parameter loopCount: how many event loops each hold a budget for this destination;
    ///   the floor is shared among them so the service-wide floor stays `minPerSecond`
    ///   (the percentage needs no sharing: each loop sees its own share of requests).
    public init(_ budget: RetryBudget, loopCount: Int = 1) {
        percent = Swift.max(0, budget.percent)
        minPerSecond = Double(Swift.max(0, budget.minPerSecond)) / Double(Swift.max(1, loopCount))
        buckets = Array(repeating: Bucket(), count: Self.windowSeconds)
    }

    /// A downstream request to this destination started (once per request, not per try).
    public mutating func requestStarted(now: NIODeadline) {
        let slot = bucket(now)
        buckets[slot].requests += 1
    }

    /// Whether one more retry fits the budget now.
    public func canRetry(now: NIODeadline) -> Bool {
        let (requests, retries) = totals(now)
        let allowed = Double(requests) * percent / 100 + minPerSecond * Double(Self.windowSeconds)
        return Double(retries + 1) <= allowed
    }

    /// A retry started (call only after `canRetry` said yes; `RetryStateMachine` does both).
    public mutating func retryStarted(now: NIODeadline) {
        let slot = bucket(now)
        buckets[slot].retries += 1
    }

    /// Requests and retries counted within the window ending at `now`.
    public func totals(_ now: NIODeadline) -> (requests: Int, retries: Int) {
        let second = now.uptimeNanoseconds / Self.bucketNanos
        var requests = 0, retries = 0
        for bucket in buckets where bucket.second != .max && bucket.second <= second
            && second - bucket.second < UInt64(Self.windowSeconds)
        {
            requests += bucket.requests
            retries += bucket.retries
        }
        return (requests, retries)
    }

    /// The slot of `now`'s second, reset first if it still holds an older second.
    private mutating func bucket(_ now: NIODeadline) -> Int {
        let second = now.uptimeNanoseconds / Self.bucketNanos
        let slot = Int(second % UInt64(Self.windowSeconds))
        if buckets[slot].second != second {
            buckets[slot] = Bucket(second: second)
        }
        return slot
    }
}
