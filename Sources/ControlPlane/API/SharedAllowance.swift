import Synchronization

/// A capacity shared by every connection of the API server and taken from any event loop:
/// open connections, or bytes of request bodies held in memory. One atomic; a take that
/// would go over the capacity fails and changes nothing.
final class SharedAllowance: Sendable {
    let capacity: Int
    private let used = Atomic<Int>(0)

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Takes `amount` if the capacity has room for it.
    func take(_ amount: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + amount <= capacity else { return false }
            let (exchanged, original) = used.compareExchange(
                expected: current, desired: current + amount, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func give(_ amount: Int) {
        _ = used.wrappingSubtract(amount, ordering: .relaxed)
    }

    var inUse: Int { used.load(ordering: .relaxed) }
}
