import Synchronization

/// A fixed number of relaxed atomic `UInt64` counters in one allocation, made once and never
/// resized: the storage behind histogram buckets and per-status-code request counters.
///
/// `Atomic` is non-copyable, so it cannot live in an `Array`; the slots sit in memory this
/// class owns and frees in `deinit`. Every method is lock-free and allocation-free; an index
/// out of range is a programming error (checked in debug builds).
public final class AtomicCounterArray: @unchecked Sendable {
    public let count: Int
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>

    public init(count: Int) {
        precondition(count > 0, "an AtomicCounterArray needs at least one slot")
        self.count = count
        slots = .allocate(capacity: count)
        for index in 0..<count {
            (slots + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    public func add(_ amount: UInt64, at index: Int) {
        assert(index >= 0 && index < count, "counter slot \(index) out of 0..<\(count)")
        _ = pointer(index).pointee.wrappingAdd(amount, ordering: .relaxed)
    }

    public func value(at index: Int) -> UInt64 {
        assert(index >= 0 && index < count, "counter slot \(index) out of 0..<\(count)")
        return pointer(index).pointee.load(ordering: .relaxed)
    }

    /// Replaces slot `index` with `transform(old)` atomically (a compare-and-exchange loop).
    public func update(at index: Int, _ transform: (UInt64) -> UInt64) {
        assert(index >= 0 && index < count, "counter slot \(index) out of 0..<\(count)")
        var old = pointer(index).pointee.load(ordering: .relaxed)
        while true {
            let (exchanged, current) = pointer(index).pointee.compareExchange(
                expected: old, desired: transform(old), ordering: .relaxed)
            if exchanged { return }
            old = current
        }
    }

    func pointer(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { slots + index }
}
