import Synchronization

/// A value that goes up and down or is set outright (Prometheus `gauge`): open connections,
/// a breaker's state, a timestamp in seconds. One relaxed atomic; lock-free and allocation-free.
public final class Gauge: Sendable {
    private let atomic = Atomic<Int64>(0)

    public init() {}

    public func set(_ value: Int64) {
        atomic.store(value, ordering: .relaxed)
    }

    /// Sets 1 for true, 0 for false: the encoding of a boolean gauge.
    public func set(_ flag: Bool) { set(flag ? 1 : 0) }

    public func increment(by amount: Int64 = 1) {
        _ = atomic.wrappingAdd(amount, ordering: .relaxed)
    }

    public func decrement(by amount: Int64 = 1) {
        _ = atomic.wrappingSubtract(amount, ordering: .relaxed)
    }

    public var value: Int64 { atomic.load(ordering: .relaxed) }
}
