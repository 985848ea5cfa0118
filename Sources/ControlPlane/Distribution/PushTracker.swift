/// Remembers when each recent version was made, so an acknowledgement by a sidecar (its next
/// watch or heartbeat reporting the version it applied) yields the change -> applied time
/// for `control_plane_push_duration_seconds`. A pure value; the caller passes the time in.
///
/// Versions only grow, so the changes are kept in order and an acknowledgement (every long
/// poll makes one) is a binary search, not a scan of the last `capacity` changes.
struct PushTracker: Sendable {
    private var changes: [(version: Int64, at: ContinuousClock.Instant)] = []
    private let capacity: Int

    init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    mutating func changed(version: Int64, at now: ContinuousClock.Instant) {
        // The first time a version was made counts; an older version is not news.
        guard version > changes.last?.version ?? .min else { return }
        changes.append((version, now))
        if changes.count > capacity { changes.removeFirst(changes.count - capacity) }
    }

    /// How long the first change the sidecar had not seen took to reach it; nil when
    /// `applied` brings nothing new since `previous` (or nothing is known about it).
    func pushDuration(applied: Int64, previous: Int64?, now: ContinuousClock.Instant) -> Duration? {
        guard let previous, applied > previous else { return nil }
        // The first change after `previous`.
        var low = 0, high = changes.count
        while low < high {
            let middle = (low + high) / 2
            if changes[middle].version > previous { high = middle } else { low = middle + 1 }
        }
        guard low < changes.count, changes[low].version <= applied else { return nil }
        return changes[low].at.duration(to: now)
    }
}
