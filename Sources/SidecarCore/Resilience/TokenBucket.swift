import NIOCore

/// A local rate limiter: `requestsPerSecond` sustained, `burst` at once after a quiet spell.
/// Answers `.limited(retryAfter:)` when a request would exceed it (the proxy replies 429
/// `rate-limited` with `Retry-After: retryAfterSeconds`).
///
/// Implemented as GCRA, the exact equivalent of a token bucket held in one integer: the
/// "theoretical arrival time" `tat`. Each admitted request pushes `tat` one emission interval
/// (1 s / rate) later; a request is admitted while `tat` is at most `burst - 1` intervals
/// ahead of now. No floating point drift, no refill loop, and a bucket whose `tat` is in the
/// past is exactly a full bucket (which `KeyedTokenBuckets` uses to evict for free).
///
/// A pure value with time as a parameter, no locks, no allocation. The proxy enforces limits
/// through `SharedTokenBucket`, the same step on an atomic shared by all event loops.
public struct TokenBucket: Sendable {
    public enum Decision: Sendable, Equatable {
        case allowed
        /// Refused; a request at `now + retryAfter` would be allowed.
        case limited(retryAfter: TimeAmount)

        /// `Retry-After` in whole seconds, rounded up, at least 1.
        public var retryAfterSeconds: Int {
            guard case .limited(let wait) = self else { return 0 }
            return Swift.max(1, Int((wait.nanoseconds + 999_999_999) / 1_000_000_000))
        }
    }

    /// Nanoseconds between admitted requests at the sustained rate.
    public let interval: UInt64
    /// How far ahead of now `tat` may run and still admit: `(burst - 1) × interval`.
    public let tolerance: UInt64
    private var tat: UInt64 = 0

    public init(_ limit: RateLimit) {
        let rate = Double(Swift.max(1, limit.requestsPerSecond))
        self.init(interval: UInt64((1_000_000_000 / rate).rounded()), burst: Swift.max(1, limit.burst))
    }

    /// A burst so large that `(burst - 1) × interval` would not fit is capped at `maxTolerance`.
    public init(interval: UInt64, burst: Int) {
        self.interval = Swift.max(1, interval)
        let (tolerance, overflow) = self.interval.multipliedReportingOverflow(by: UInt64(Swift.max(0, burst - 1)))
        self.tolerance = overflow ? Self.maxTolerance : Swift.min(tolerance, Self.maxTolerance)
    }

    /// Half the clock's range (146 years): `tat` stays at most this plus one interval ahead of
    /// `now`, so it never overflows. Any config burst above it is unlimited in practice.
    static let maxTolerance = UInt64.max / 2

    /// Takes one request's token if there is one.
    public mutating func tryTake(now: NIODeadline) -> Decision {
        Self.take(tat: &tat, now: now.uptimeNanoseconds, interval: interval, tolerance: tolerance)
    }

    /// Whether this bucket is full at `now` (indistinguishable from a new bucket).
    public func isFull(now: NIODeadline) -> Bool { tat <= now.uptimeNanoseconds }

    /// The GCRA step, shared with `SharedTokenBucket`.
    static func take(tat: inout UInt64, now: UInt64, interval: UInt64, tolerance: UInt64) -> Decision {
        let start = Swift.max(tat, now)
        let ahead = start - now
        guard ahead <= tolerance else {
            return .limited(retryAfter: .nanoseconds(Int64(ahead - tolerance)))
        }
        tat = start + interval
        return .allowed
    }
}
