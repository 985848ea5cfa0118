/// The fixed upper bounds of a histogram's buckets, kept both as nanoseconds (compared on the
/// hot path, integers only) and as the `le` label text written at exposition.
///
/// Bounds are strictly increasing; the `+Inf` bucket is implicit.
public struct HistogramBuckets: Sendable, Equatable {
    /// Upper bounds in nanoseconds, strictly increasing.
    public let upperBoundsNanos: [UInt64]
    /// The `le` label value of each bound (seconds, as Prometheus reads a float).
    public let labels: [String]

    /// Bounds given in seconds, e.g. `[0.005, 0.01, 0.1]`.
    public init(seconds bounds: [Double]) {
        precondition(!bounds.isEmpty, "a histogram needs at least one finite bucket")
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "bucket bounds must increase")
        precondition(bounds.allSatisfy { $0 > 0 && $0.isFinite }, "bucket bounds must be positive and finite")
        upperBoundsNanos = bounds.map { UInt64(($0 * 1e9).rounded()) }
        labels = bounds.map { PrometheusTextWriter.format($0) }
    }

    /// Request latency from 0.5 ms to 30 s: covers a loopback hop up to the longest timeout.
    public static let requestLatency = HistogramBuckets(seconds: [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
    ])

    /// The index of the bucket `nanos` falls into; `upperBoundsNanos.count` is `+Inf`.
    public func index(of nanos: UInt64) -> Int {
        // Linear over ~15 bounds beats a binary search's branches; most requests are fast.
        var index = 0
        let bounds = upperBoundsNanos
        while index < bounds.count, nanos > bounds[index] { index += 1 }
        return index
    }
}
