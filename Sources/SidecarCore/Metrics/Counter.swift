import Synchronization

/// A monotonically increasing count (Prometheus `counter`): one relaxed atomic, so an
/// increment from any thread neither locks nor allocates.
public final class Counter: Sendable {
    private let atomic = Atomic<UInt64>(0)

    public init() {}

    public func increment() { add(1) }

    public func add(_ amount: UInt64) {
        _ = atomic.wrappingAdd(amount, ordering: .relaxed)
    }

    public var value: UInt64 { atomic.load(ordering: .relaxed) }
}
