/// Wakes long-polling watchers when the mesh version moves, debouncing bursts of changes into
/// one publication (at most `debounce` after the first change).
///
/// An actor: watchers suspend on it; `changed` may be called from anywhere.
public actor SnapshotDistributor {
    public private(set) var publishedVersion: Int64
    private var pendingVersion: Int64?
    private let debounce: Duration
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
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
        let woken = waiters
        waiters.removeAll()
        metrics.setWatchers(0)
        for continuation in woken.values { continuation.resume() }
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
        await withCheckedContinuation { continuation in
            waiters[id] = continuation
            metrics.setWatchers(waiters.count)
        }
        timer.cancel()
        return publishedVersion > version
    }

    private func expire(_ id: Int) {
        guard let continuation = waiters.removeValue(forKey: id) else { return }
        metrics.setWatchers(waiters.count)
        continuation.resume()
    }
}
