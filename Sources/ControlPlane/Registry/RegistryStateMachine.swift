import SidecarCore

/// The liveness of sidecar-registered instances, as a pure state machine: callers pass the
/// time in and carry out the returned actions (bump the version, push snapshots).
///
/// An instance not heard from for `ttl` is marked unhealthy; after a further `grace` it is
/// removed; a heartbeat in between makes it healthy again. Deregistration removes at once.
/// No I/O, no clock of its own: tests drive it with a manual clock.
public struct RegistryStateMachine: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Settings: Sendable, Equatable {
        public var ttl: Duration
        public var grace: Duration

        public init(ttl: Duration = .seconds(15), grace: Duration = .seconds(60)) {
            self.ttl = ttl
            self.grace = grace
        }
    }

    /// One registered sidecar instance.
    public struct Entry: Sendable, Equatable {
        public var instance: Instance
        /// Services it calls; nil when it declared none (it then sees every service).
        public var dependencies: [String]?
        public var lastHeartbeat: Instant
        /// The snapshot version the sidecar last reported as applied.
        public var appliedVersion: Int64?
        /// This entry's own TTL (an operator-applied Instance's `ttl`); nil uses the settings'.
        public var ttl: Duration?
        /// The newest snapshot the sidecar refused and why, as its last heartbeat said; nil
        /// once it applies a later one.
        public var rejection: Rejection?
        /// The notAfter (Unix seconds) of the sidecar's certificate, as its last heartbeat that
        /// carried one said.
        public var certificateExpiresAt: Int64?
    }

    public struct Rejection: Sendable, Equatable {
        public var version: Int64
        public var reason: String

        public init(version: Int64, reason: String) {
            self.version = version
            self.reason = reason
        }
    }

    /// What the caller must do. Every case but `none` changes what sidecars see.
    public enum Action: Sendable, Equatable {
        case added(name: String)
        case becameUnhealthy(name: String)
        case becameHealthy(name: String)
        case removed(name: String)
    }

    public enum HeartbeatResult: Sendable, Equatable {
        case accepted([Action])
        /// Never registered, or already removed: the sidecar must register again.
        case unknownInstance
    }

    public let settings: Settings
    public private(set) var entries: [String: Entry] = [:]

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Registers (or re-registers) an instance, healthy, heard from now.
    public mutating func register(_ instance: Instance, dependencies: [String]?, now: Instant, ttl: Duration? = nil) -> [Action] {
        var registered = instance
        registered.health = .healthy
        let previous = entries[instance.name]
        entries[instance.name] = Entry(
            instance: registered, dependencies: dependencies, lastHeartbeat: now,
            appliedVersion: previous?.appliedVersion, ttl: ttl)
        if let previous, previous.instance == registered, previous.dependencies == dependencies { return [] }
        return [.added(name: instance.name)]
    }

    /// A heartbeat reports the version applied and the refused one (nil clears it).
    ///
    /// The applied version only moves forward here: a heartbeat runs beside the watch, so one
    /// sent just before a snapshot was applied can arrive after the watch that acknowledged
    /// it; taking its older version would show the proxy stale until the next heartbeat.
    /// The watch (`acknowledge`), whose requests follow the applies in order, may set any.
    public mutating func heartbeat(
        name: String, appliedVersion: Int64?, rejection: Rejection? = nil, certificateExpiresAt: Int64? = nil, now: Instant
    ) -> HeartbeatResult {
        guard var entry = entries[name] else { return .unknownInstance }
        entry.lastHeartbeat = now
        if let certificateExpiresAt { entry.certificateExpiresAt = certificateExpiresAt }
        if let appliedVersion { entry.appliedVersion = max(entry.appliedVersion ?? appliedVersion, appliedVersion) }
        entry.rejection = rejection
        var actions: [Action] = []
        if entry.instance.health == .unhealthy {
            entry.instance.health = .healthy
            actions.append(.becameHealthy(name: name))
        }
        entries[name] = entry
        return .accepted(actions)
    }

    /// Records the version a sidecar applied (a watch request reports it too).
    public mutating func acknowledge(name: String, appliedVersion: Int64) {
        entries[name]?.appliedVersion = appliedVersion
    }

    /// Sets an entry's health as a shared store decided it (etcd: its alive lease lapsed, or a
    /// heartbeat to another replica renewed it).
    public mutating func setHealth(name: String, healthy: Bool) -> [Action] {
        guard let entry = entries[name], (entry.instance.health == .healthy) != healthy else { return [] }
        entries[name]?.instance.health = healthy ? .healthy : .unhealthy
        return [healthy ? .becameHealthy(name: name) : .becameUnhealthy(name: name)]
    }

    public mutating func deregister(name: String) -> [Action] {
        entries.removeValue(forKey: name) == nil ? [] : [.removed(name: name)]
    }

    /// Applies the TTL and grace rules at `now`.
    public mutating func tick(now: Instant) -> [Action] {
        var actions: [Action] = []
        for (name, entry) in entries.sorted(by: { $0.key < $1.key }) {
            let silence = entry.lastHeartbeat.duration(to: now)
            let ttl = entry.ttl ?? settings.ttl
            if silence >= ttl + settings.grace {
                entries.removeValue(forKey: name)
                actions.append(.removed(name: name))
            } else if silence >= ttl, entry.instance.health == .healthy {
                entries[name]?.instance.health = .unhealthy
                actions.append(.becameUnhealthy(name: name))
            }
        }
        return actions
    }

    /// Every registered instance, with its current health, ordered by name.
    public var instances: [Instance] {
        entries.values.map(\.instance).sorted { $0.name < $1.name }
    }
}
