import NIOCore
import Synchronization

/// A `TokenBucket` shared by every event loop: the same GCRA, with its one integer of state
/// (the theoretical arrival time) in an atomic updated by compare-and-swap, so a limit holds
/// exactly for the whole process however the traffic lands on the loops.
///
/// Lock-free: `tryTake` reads `tat`, runs the GCRA step on a copy and publishes it with one
/// CAS, retrying only when another loop admitted a request in between. A refused request
/// writes nothing. Time is a parameter (tests pass a manual clock). Made off the hot path
/// (`SharedLimits`), then used through a reference; `tryTake` does not allocate.
public final class SharedTokenBucket: Sendable {
    /// The limit's emission interval and tolerance (the bucket's state is here, not there).
    public let parameters: TokenBucket
    private let tat = Atomic<UInt64>(0)

    public init(_ limit: RateLimit) {
        parameters = TokenBucket(limit)
    }

    public func tryTake(now: NIODeadline) -> TokenBucket.Decision {
        let nanos = now.uptimeNanoseconds
        var current = tat.load(ordering: .relaxed)
        while true {
            var next = current
            let decision = TokenBucket.take(
                tat: &next, now: nanos, interval: parameters.interval, tolerance: parameters.tolerance)
            guard decision == .allowed else { return decision }
            let (exchanged, original) = tat.compareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return .allowed }
            current = original
        }
    }

    /// What `tryTake` would answer at `now`, taking nothing (`/explain`).
    public func peek(now: NIODeadline) -> TokenBucket.Decision {
        var copy = tat.load(ordering: .relaxed)
        return TokenBucket.take(tat: &copy, now: now.uptimeNanoseconds, interval: parameters.interval, tolerance: parameters.tolerance)
    }

    /// Whether the bucket is full at `now` (indistinguishable from a new one; may be forgotten).
    public func isFull(now: NIODeadline) -> Bool { tat.load(ordering: .relaxed) <= now.uptimeNanoseconds }
}
