import Synchronization

/// The dashboard's signed-in sessions: a random 256-bit id (the cookie's value) and when it
/// expires. In memory only: a restart signs everyone out, which is the safe side.
///
/// Thread-safe behind one mutex; time is passed in by the caller, so tests move a clock.
public final class DashboardSessions: Sendable {
    private let sessions = Mutex<[String: ContinuousClock.Instant]>([:])
    public let lifetime: Duration

    public init(lifetime: Duration = .seconds(12 * 3600)) {
        self.lifetime = lifetime
    }

    /// A new session valid for `lifetime` from `now`; expired ones are dropped on the way.
    public func create(now: ContinuousClock.Instant = .now) -> String {
        var generator = SystemRandomNumberGenerator()
        let id = (0..<4).map { _ in
            let word = generator.next() as UInt64
            let hex = String(word, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value > now }
            sessions[id] = now + lifetime
        }
        return id
    }

    public func isValid(_ id: String?, now: ContinuousClock.Instant = .now) -> Bool {
        guard let id, !id.isEmpty else { return false }
        return sessions.withLock { ($0[id] ?? now) > now }
    }

    public func end(_ id: String?) {
        guard let id else { return }
        _ = sessions.withLock { $0.removeValue(forKey: id) }
    }

    public var count: Int { sessions.withLock { $0.count } }
}
