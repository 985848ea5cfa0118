/// The request series of one (direction, peer): per-status counts, the duration histogram and
/// byte counts, all pre-allocated. The data plane resolves one per cluster when it builds its
/// route table and records every finished request on it: no lookup, lock or allocation.
public final class RequestMetricsHandle: Sendable {
    /// Status codes 100...599 have a slot each; anything else lands in the last slot (`code="other"`).
    static let statusRange = 100...599
    static let otherSlot = statusRange.count

    let codes = AtomicCounterArray(count: RequestMetricsHandle.statusRange.count + 1)
    public let duration: Histogram
    /// Bytes from downstream to upstream (`flow="request"`).
    public let requestBytes = Counter()
    /// Bytes from upstream to downstream (`flow="response"`).
    public let responseBytes = Counter()

    init(buckets: HistogramBuckets) {
        duration = Histogram(buckets: buckets)
    }

    /// Counts one finished request: its status (sent downstream), how long it took from the
    /// first request byte to the last response byte, and the body bytes each way.
    public func record(status: Int, durationNanos: UInt64, requestBytes: UInt64 = 0, responseBytes: UInt64 = 0) {
        let slot = RequestMetricsHandle.statusRange.contains(status)
            ? status - RequestMetricsHandle.statusRange.lowerBound : RequestMetricsHandle.otherSlot
        codes.add(1, at: slot)
        duration.observe(nanoseconds: durationNanos)
        if requestBytes > 0 { self.requestBytes.add(requestBytes) }
        if responseBytes > 0 { self.responseBytes.add(responseBytes) }
    }

    /// Counts bytes of a stream that is not an HTTP request (L4 TCP proxying), as they pass.
    public func recordBytes(request: UInt64, response: UInt64) {
        if request > 0 { requestBytes.add(request) }
        if response > 0 { responseBytes.add(response) }
    }

    /// How many requests ended with `status` so far.
    public func count(status: Int) -> UInt64 {
        guard RequestMetricsHandle.statusRange.contains(status) else { return codes.value(at: RequestMetricsHandle.otherSlot) }
        return codes.value(at: status - RequestMetricsHandle.statusRange.lowerBound)
    }

    /// The `code` label values with a non-zero count, ascending, with their counts.
    var touchedCodes: [(code: String, count: UInt64)] {
        (0..<codes.count).compactMap { slot in
            let count = codes.value(at: slot)
            guard count > 0 else { return nil }
            let code = slot == RequestMetricsHandle.otherSlot
                ? "other" : String(slot + RequestMetricsHandle.statusRange.lowerBound)
            return (code, count)
        }
    }
}
