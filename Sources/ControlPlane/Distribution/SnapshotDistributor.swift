import SidecarCore
import Synchronization

/// Computes the snapshots a publication sends: the control plane, once per service for all of
/// that service's watchers.
public protocol SnapshotSource: AnyObject, Sendable {
    /// The current snapshot of each of `services`, all at one version.
    func publishedSnapshots(of services: [String]) async -> [PublishedSnapshot]
}

/// Holds the long-polling watches and wakes them when the mesh version moves: a burst of
/// changes is debounced into one publication (at most `debounce` after the first change),
/// which asks the `SnapshotSource` once per watched service for its encoded snapshot and then
/// resumes every waiting watch of that service with the same bytes, in one pass.
///
/// Decisions live in `WatchStateMachine`; this class carries them out. Its state sits behind
/// one mutex, held only for the state machine's steps and the `control_plane_watchers` gauge
/// they move (so the gauge never goes back to a stale count), never across an `await`; `changed`
/// is synchronous (the control plane calls it in the same actor step as its store write) and
/// a watch never goes through the control plane's actor to wait or to wake.
public final class SnapshotDistributor: Sendable {
    /// How a watch ended.
    public enum WatchResult: Sendable, Equatable {
        /// The service's snapshot at a version the watcher did not hold.
        case snapshot(PublishedSnapshot)
        /// The watcher is behind and its snapshot is not at hand: compute the current one.
        case changed
        /// Nothing changed within the timeout (or the watch was cancelled).
        case timedOut
    }

    private typealias Machine = WatchStateMachine<CheckedContinuation<WatchResult, Never>>

    private struct State: ~Copyable {
        var machine: Machine
        var nextID = 0
        weak var source: (any SnapshotSource)?
    }

    private let state: Mutex<State>
    private let debounce: Duration
    private let metrics: ControlPlaneMetrics

    public init(version: Int64, debounce: Duration = .milliseconds(20), metrics: ControlPlaneMetrics) {
        self.state = Mutex(State(machine: Machine(version: version)))
        self.debounce = debounce
        self.metrics = metrics
    }

    /// Where publications get their snapshots (held weakly: the source owns this distributor).
    /// Without one, woken watchers get `.changed` and compute their own.
    public func attach(_ source: any SnapshotSource) {
        state.withLock { $0.source = source }
    }

    public var publishedVersion: Int64 { state.withLock { $0.machine.publishedVersion } }

    /// Something changed: `version` is the new mesh version.
    public func changed(version: Int64) {
        let action = state.withLock { $0.machine.changed(version: version) }
        if action == .startDebounce { startDebounce() }
    }

    /// Suspends until a version other than `knownVersion` is published (answering at once if
    /// `knownVersion` is not the latest), or `timeout` passes, or the calling task is cancelled
    /// (a watcher whose connection went away stops counting at once).
    public func watch(service: String, knownVersion: Int64?, timeout: Duration) async -> WatchResult {
        let id = state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
        var timer: Task<Void, Never>?
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<WatchResult, Never>) in
                let action = state.withLock { state -> Machine.WatchAction? in
                    // Checked under the lock: either this sees the cancellation or `remove` sees the watch.
                    if Task.isCancelled { return nil }
                    let action = state.machine.watch(id: id, service: service, version: knownVersion, waiter: continuation)
                    if case .wait = action { metrics.setWatchers(state.machine.watcherCount) }
                    return action
                }
                switch action {
                case nil:
                    continuation.resume(returning: .timedOut)
                case .answer(let snapshot):
                    continuation.resume(returning: .snapshot(snapshot))
                case .compute:
                    continuation.resume(returning: .changed)
                case .wait:
                    timer = Task { [weak self] in
                        guard (try? await Task.sleep(for: timeout)) != nil else { return }
                        self?.remove(id)
                    }
                }
            }
        } onCancel: {
            remove(id)
        }
        timer?.cancel()
        return result
    }

    private func remove(_ id: Int) {
        let waiter = state.withLock { state in
            let waiter = state.machine.remove(id: id)
            metrics.setWatchers(state.machine.watcherCount)
            return waiter
        }
        waiter?.resume(returning: .timedOut)
    }

    private func startDebounce() {
        Task { [debounce] in
            try? await Task.sleep(for: debounce)
            await self.publish()
        }
    }

    /// Computes each watched service's snapshot once, then resumes every watcher behind it.
    private func publish() async {
        let (action, source) = state.withLock { ($0.machine.publish(), $0.source) }
        guard case .compute(let services) = action else { return }
        let snapshots = await source?.publishedSnapshots(of: services) ?? []
        let wake = state.withLock { state in
            let wake = state.machine.published(snapshots)
            metrics.setWatchers(state.machine.watcherCount)
            return wake
        }
        for (waiter, snapshot) in wake.waiters {
            waiter.resume(returning: snapshot.map(WatchResult.snapshot) ?? .changed)
        }
        if wake.startDebounce { startDebounce() }
    }
}
