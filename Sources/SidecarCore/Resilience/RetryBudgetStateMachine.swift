import NIOCore

/// The retry budget of one destination: retries started within the last `window` (10 s) may
/// be at most `percent` of the requests started in it, plus a floor of `minPerSecond` for
/// every second of the window (linkerd's reserve), so a quiet service can still retry.
///
/// Counted in 1 s buckets (a sliding window at 1 s granularity) held by a
/// `RetryWindowCounters` that every event loop of the process shares for the destination, so
/// the numbers hold for the service however its callers' connections fall on the loops. Only
/// downstream requests count as requests (`requestStarted` once per request, not per try), so
/// retries never pay for retries. With the defaults (20 %, 10/s) a service whose every request
/// fails sends at most 1.2 × requests + 100 tries per 10 s (plus at most one per other loop
/// that checked the same instant: check and count are two atomic steps).
///
/// The decision is a pure function of the counts and time, which is a parameter; no
/// allocation per request.
public struct RetryBudgetStateMachine: Sendable {
    public static let windowSeconds = RetryWindowCounters.windowSeconds
    private static let bucketNanos: UInt64 = 1_000_000_000

    public let percent: Double
    public let minPerSecond: Double
    /// The counts, shared by the loops (pass the same one to each loop's budget).
    public let window: RetryWindowCounters

    public init(_ budget: RetryBudget, window: RetryWindowCounters = RetryWindowCounters()) {
        percent = Swift.max(0, budget.percent)
        minPerSecond = Double(Swift.max(0, budget.minPerSecond))
        self.window = window
    }

    /// A downstream request to this destination started (once per request, not per try).
    public mutating func requestStarted(now: NIODeadline) {
        window.add(requests: 1, second: Self.second(now))
    }

    /// Whether one more retry fits the budget now.
    public func canRetry(now: NIODeadline) -> Bool {
        let (requests, retries) = totals(now)
        let allowed = Double(requests) * percent / 100 + minPerSecond * Double(Self.windowSeconds)
        return Double(retries + 1) <= allowed
    }

    /// A retry started (call only after `canRetry` said yes; `RetryStateMachine` does both).
    public mutating func retryStarted(now: NIODeadline) {
        window.add(retries: 1, second: Self.second(now))
    }

    /// Requests and retries counted within the window ending at `now`.
    public func totals(_ now: NIODeadline) -> (requests: Int, retries: Int) {
        window.totals(second: Self.second(now))
    }

    private static func second(_ now: NIODeadline) -> UInt64 { now.uptimeNanoseconds / bucketNanos }
}
