import Synchronization

/// Whether the sidecar takes traffic: ready once its listeners are bound, draining from the
/// first graceful-shutdown signal. Read by `/ready` from the admin loop, set by listeners.
public final class ReadinessState: Sendable {
    private let listening = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)
    private let expectedListeners: Int

    public init(expectedListeners: Int) {
        self.expectedListeners = expectedListeners
    }

    func listenerBound() { listening.add(1, ordering: .relaxed) }
    func startDraining() { draining.store(true, ordering: .relaxed) }

    public var readiness: Readiness {
        if draining.load(ordering: .relaxed) { return .draining }
        return listening.load(ordering: .relaxed) >= expectedListeners ? .ready : .notReady
    }
}
