/// Remembers when each recent version was made, so an acknowledgement by a sidecar (its next
/// watch or heartbeat reporting the version it applied) yields the change -> applied time
/// for `control_plane_push_duration_seconds`. A pure value; the caller passes the time in.
struct PushTracker: Sendable {
    private var changeTimes: [Int64: ContinuousClock.Instant] = [:]
    private let capacity: Int

    init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    mutating func changed(version: Int64, at now: ContinuousClock.Instant) {
        changeTimes[version] = changeTimes[version] ?? now
        if changeTimes.count > capacity, let oldest = changeTimes.keys.min() {
            changeTimes.removeValue(forKey: oldest)
        }
    }

    /// How long the first change the sidecar had not seen took to reach it; nil when
    /// `applied` brings nothing new since `previous` (or nothing is known about it).
    func pushDuration(applied: Int64, previous: Int64?, now: ContinuousClock.Instant) -> Duration? {
        guard let previous, applied > previous else { return nil }
        let unseen = changeTimes.filter { $0.key > previous && $0.key <= applied }
        guard let first = unseen.min(by: { $0.key < $1.key }) else { return nil }
        return first.value.duration(to: now)
    }
}
