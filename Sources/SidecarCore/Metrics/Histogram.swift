import Synchronization

/// A distribution of durations over fixed buckets (Prometheus `histogram`). Observing is one
/// bucket search over integers and two relaxed atomic adds: no lock, no allocation, no float.
///
/// Buckets are stored per bucket (not cumulative) and summed at exposition, so `_count` always
/// equals the `+Inf` bucket. `_sum` is kept in nanoseconds and written in seconds.
public final class Histogram: Sendable {
    public let buckets: HistogramBuckets
    private let counts: AtomicCounterArray
    private let sumNanos = Atomic<UInt64>(0)

    public init(buckets: HistogramBuckets = .requestLatency) {
        self.buckets = buckets
        counts = AtomicCounterArray(count: buckets.upperBoundsNanos.count + 1)
    }

    public func observe(nanoseconds: UInt64) {
        counts.add(1, at: buckets.index(of: nanoseconds))
        _ = sumNanos.wrappingAdd(nanoseconds, ordering: .relaxed)
    }

    public func observe(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 else { return observe(nanoseconds: 0) }
        observe(nanoseconds: UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000))
    }

    /// Cumulative counts, one per finite bound then `+Inf` (read at exposition, not atomic as a whole).
    public var cumulativeCounts: [UInt64] {
        var running: UInt64 = 0
        return (0..<counts.count).map { index in
            running &+= counts.value(at: index)
            return running
        }
    }

    public var count: UInt64 { cumulativeCounts.last ?? 0 }

    public var sumNanoseconds: UInt64 { sumNanos.load(ordering: .relaxed) }

    public var sumSeconds: Double { Double(sumNanoseconds) / 1e9 }
}
