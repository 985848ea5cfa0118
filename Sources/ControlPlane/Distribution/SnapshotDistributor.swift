import SidecarCore

/// Wakes long-polling watchers when the mesh version moves, debouncing bursts of changes into
/// one publication (at most `debounce` after the first change).
///
/// An actor: watchers suspend on it; `changed` may be called from anywhere.
public actor SnapshotDistributor {
    public private(set) var publishedVersion: Int64
    private var pendingVersion: Int64?
    private let debounce: Duration
    /// Suspended watchers and the version each already has.
    private var waiters: [Int: (version: Int64, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var nextWaiter = 0
    private let metrics: ControlPlaneMetrics

    public init(version: Int64, debounce: Duration = .milliseconds(20), metrics: ControlPlaneMetrics) {
        self.publishedVersion = version
        self.debounce = debounce
        self.metrics = metrics
    }

    /// Something changed: `version` is the new mesh version.
    public func changed(version: Int64) {
        if pendingVersion == nil {
            Task { [debounce] in
                try? await Task.sleep(for: debounce)
                self.publish()
            }
        }
        pendingVersion = max(pendingVersion ?? version, version)
    }

    private func publish() {
        guard let pending = pendingVersion else { return }
        pendingVersion = nil
        publishedVersion = max(publishedVersion, pending)
        // Only watchers behind the new version wake: one that already has it keeps waiting.
        let woken = waiters.filter { $0.value.version < publishedVersion }
        for id in woken.keys { waiters.removeValue(forKey: id) }
        metrics.setWatchers(waiters.count)
        for waiter in woken.values { waiter.continuation.resume() }
    }

    /// Suspends until the published version exceeds `version` or `timeout` passes; true if it moved.
    public func waitForVersion(above version: Int64, timeout: Duration) async -> Bool {
        if publishedVersion > version { return true }
        let id = nextWaiter
        nextWaiter += 1
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.expire(id)
        }
        // A watcher whose connection went away is cancelled: it stops counting at once.
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume()
                    return
                }
                waiters[id] = (version, continuation)
                metrics.setWatchers(waiters.count)
            }
        } onCancel: {
            Task { await self.expire(id) }
        }
        timer.cancel()
        return publishedVersion > version
    }

    private func expire(_ id: Int) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
        metrics.setWatchers(waiters.count)
        waiter.continuation.resume()
    }
}
