/// The request and retry counts of one destination over the last `windowSeconds`, in 1 s
/// buckets on a ring, shared by every event loop of the process, so a retry budget holds for
/// the service and not per loop: a downstream connection stays on one loop, so a caller
/// with few keep-alive connections puts all its traffic on one loop, and a budget split among
/// loops ran out there while the others sat idle (issue 11's `budget-exhausted` at 5 retries/s).
///
/// Lock-free: each bucket is one atomic word, `second` (24 bits, uptime seconds modulo 2^24)
/// | requests (20 bits) | retries (20 bits), updated by compare-and-exchange; a bucket whose
/// second has passed is reset by the first update that lands in its slot. Counts saturate at
/// 2^20 − 1 per second. No allocation after init.
public final class RetryWindowCounters: Sendable {
    public static let windowSeconds = 10
    private static let secondBits: UInt64 = 24
    private static let countBits: UInt64 = 20
    private static let countMask: UInt64 = (1 << countBits) - 1
    private static let secondMask: UInt64 = (1 << secondBits) - 1

    private let buckets = AtomicCounterArray(count: windowSeconds)

    public init() {}

    /// Counts `requests` downstream requests and `retries` retries started at `second`
    /// (uptime seconds).
    public func add(requests: UInt64 = 0, retries: UInt64 = 0, second: UInt64) {
        let stamp = second & Self.secondMask
        buckets.update(at: Int(second % UInt64(Self.windowSeconds))) { word in
            var (bucketSecond, bucketRequests, bucketRetries) = Self.unpack(word)
            if bucketSecond != stamp || word == 0 { (bucketSecond, bucketRequests, bucketRetries) = (stamp, 0, 0) }
            return Self.pack(
                second: bucketSecond, requests: Swift.min(bucketRequests + requests, Self.countMask),
                retries: Swift.min(bucketRetries + retries, Self.countMask))
        }
    }

    /// Requests and retries counted within the window ending at `second`.
    public func totals(second: UInt64) -> (requests: Int, retries: Int) {
        let now = second & Self.secondMask
        var requests = 0, retries = 0
        for index in 0..<Self.windowSeconds {
            let word = buckets.value(at: index)
            guard word != 0 else { continue }
            let (bucketSecond, bucketRequests, bucketRetries) = Self.unpack(word)
            let age = (now &- bucketSecond) & Self.secondMask  // modular: the stamp wraps every 194 days
            guard age < UInt64(Self.windowSeconds) else { continue }
            requests += Int(bucketRequests)
            retries += Int(bucketRetries)
        }
        return (requests, retries)
    }

    private static func pack(second: UInt64, requests: UInt64, retries: UInt64) -> UInt64 {
        second << (2 * countBits) | requests << countBits | retries
    }

    private static func unpack(_ word: UInt64) -> (second: UInt64, requests: UInt64, retries: UInt64) {
        (word >> (2 * countBits) & secondMask, word >> countBits & countMask, word & countMask)
    }
}
