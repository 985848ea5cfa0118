import SidecarCore

/// Where the control plane keeps what operators applied and the join tokens it issued.
///
/// Every resource carries a `resourceVersion` taken from one global, monotonically increasing
/// counter; every mutation is one transaction (all-or-nothing) and is durable once it returns.
/// Two backends: `SQLiteResourceStore` (one process, embedded) and `EtcdResourceStore` (replicas
/// sharing an etcd cluster, where other processes write too: `observeChanges`).
///
/// Writes are `async`: etcd's take network round trips, and a caller (the control plane's actor)
/// must not hold a thread, or itself, while they are under way. They are `nonsending`: a store
/// that needs no round trip (SQLite: a short local transaction) runs on the caller's executor,
/// with no hop off the actor and back; etcd's store hops to its client for the I/O. Reads are
/// synchronous: etcd's come from the replica's in-memory mirror, SQLite's are short local queries.
public protocol ResourceStore: Sendable {
    /// The counter's current value: the version of the latest change (0 when empty).
    func currentVersion() throws(StoreError) -> Int64

    /// Creates or updates every resource in one transaction. A resource carrying a
    /// `resourceVersion` must match the stored one (optimistic concurrency); one without
    /// overwrites. Returns the resources as stored, stamped with their versions.
    nonisolated(nonsending) func apply(_ resources: [MeshResource]) async throws(StoreError) -> [MeshResource]

    /// Resources of `kind` (all kinds when nil), ordered by kind and name.
    func list(kind: ResourceKind?) throws(StoreError) -> [MeshResource]

    func get(kind: ResourceKind, name: String) throws(StoreError) -> MeshResource?

    /// Removes one resource; `StoreError.notFound` if absent.
    nonisolated(nonsending) func delete(kind: ResourceKind, name: String) async throws(StoreError)

    /// Records a registry change in one transaction: saves the registrations that were added
    /// or changed, drops the removed ones, and advances the global version without touching a
    /// resource, returning the new value (every change a sidecar sees has one ordered version).
    /// Registrations are kept so that a restarted control plane still knows every instance
    /// (each gets a full TTL again) instead of pushing endpoint lists without them.
    nonisolated(nonsending) func recordRegistryChange(saving: [Registration], removing: [String]) async throws(StoreError) -> Int64

    /// Every saved registration, ordered by name.
    func registrations() throws(StoreError) -> [Registration]

    /// Stores a new token; its id and secret hash must be new.
    nonisolated(nonsending) func saveJoinToken(_ token: JoinToken) async throws(StoreError)
    /// The token whose secret hashes to `secretHash`, if stored (expired, revoked and used-up
    /// ones included, so the caller can say which).
    func joinToken(secretHash: String) throws(StoreError) -> JoinToken?
    /// Every stored token, ordered by service, then expiry, then id.
    func joinTokens() throws(StoreError) -> [JoinToken]
    /// Marks the token revoked (again is fine); `StoreError.notFound` if no token has that id.
    nonisolated(nonsending) func revokeJoinToken(id: String) async throws(StoreError) -> JoinToken
    /// Takes one use of the token `id` in one transaction if it is usable at `now` (Unix
    /// seconds): of two concurrent calls on a token with one use left, exactly one succeeds.
    nonisolated(nonsending) func consumeJoinToken(id: String, now: Int64) async throws(StoreError) -> JoinTokenUse

    /// Whether the store itself expires registrations (etcd leases): then no process's registry
    /// clock removes them, and a heartbeat to any replica keeps one alive (`keepAlive`).
    var expiresRegistrations: Bool { get }
    /// Keeps a saved registration alive; false if the store no longer has it (it expired).
    nonisolated(nonsending) func keepAlive(registration name: String) async throws(StoreError) -> Bool
    /// Calls `handler` after each change the store saw from anyone (other replicas included),
    /// once it can be read. A store only this process writes never calls it.
    func observeChanges(_ handler: @escaping @Sendable (StoreChange) -> Void)
}

/// What changed in a shared store: registrations saved and removed (by any replica, or by
/// lease expiry), and operator-applied Instances stored or deleted (their `ttl` leases are
/// renewed by a re-apply on any replica). The version moved too: `currentVersion()` has it.
public struct StoreChange: Sendable, Equatable {
    public var savedRegistrations: [Registration]
    public var removedRegistrations: [String]
    public var storedInstances: [Instance]
    public var deletedInstances: [String]
    /// Registrations whose TTL lapsed (no heartbeat to any replica), or that heard one again.
    public var unhealthyRegistrations: [String] = []
    public var healthyRegistrations: [String] = []

    public init(
        savedRegistrations: [Registration] = [], removedRegistrations: [String] = [], storedInstances: [Instance] = [],
        deletedInstances: [String] = []
    ) {
        self.savedRegistrations = savedRegistrations
        self.removedRegistrations = removedRegistrations
        self.storedInstances = storedInstances
        self.deletedInstances = deletedInstances
    }
}

extension ResourceStore {
    public var expiresRegistrations: Bool { false }
    public func keepAlive(registration name: String) throws(StoreError) -> Bool { true }
    public func observeChanges(_ handler: @escaping @Sendable (StoreChange) -> Void) {}

    /// Advances the global version alone.
    nonisolated(nonsending) public func bumpVersion() async throws(StoreError) -> Int64 {
        try await recordRegistryChange(saving: [], removing: [])
    }
}

/// An instance a sidecar registered, and the services it declared it calls (nil: all).
public struct Registration: Sendable, Equatable {
    public var instance: Instance
    public var dependencies: [String]?

    public init(instance: Instance, dependencies: [String]?) {
        self.instance = instance
        self.dependencies = dependencies
    }
}

/// A join token as stored: only the SHA-256 of its secret, a public id (what `token list`
/// shows and `token revoke` takes), the service it proves, its expiry and the uses it has left.
public struct JoinToken: Sendable, Equatable {
    public var id: String
    public var secretHash: String
    public var service: String
    /// Unix seconds.
    public var expiresAt: Int64
    /// Certificates it may still be exchanged for; nil: no limit.
    public var usesLeft: Int?
    public var revoked: Bool

    /// How long a token lives unless `token create --ttl` says otherwise: 24 h.
    public static let defaultLifetimeSeconds: Int64 = 24 * 3600

    public init(id: String = JoinToken.makeID(), secretHash: String, service: String, expiresAt: Int64, usesLeft: Int? = nil, revoked: Bool = false) {
        self.id = id
        self.secretHash = secretHash
        self.service = service
        self.expiresAt = expiresAt
        self.usesLeft = usesLeft
        self.revoked = revoked
    }

    /// Whether a token can still be used, and if not, why (revocation wins over the rest).
    public enum State: String, Sendable, Equatable {
        case active
        case expired
        case revoked
        case usedUp = "used-up"
    }

    public func state(now: Int64) -> State {
        if revoked { return .revoked }
        if expiresAt <= now { return .expired }
        if let usesLeft, usesLeft <= 0 { return .usedUp }
        return .active
    }

    /// 8 random bytes, hex: names a token without revealing anything about its secret.
    public static func makeID() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef")
        return String((0..<16).map { _ in digits[Int.random(in: 0..<16, using: &generator)] })
    }
}

/// What `consumeJoinToken` did.
public enum JoinTokenUse: Sendable, Equatable {
    /// One use was taken; the token as it is now.
    case consumed(JoinToken)
    /// Nothing was taken: the token as it is and why it is not usable.
    case refused(JoinToken, JoinToken.State)
    /// No token has that id.
    case unknown
}

/// Why the store refused or failed; mapped to HTTP statuses in `APIError`.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Optimistic concurrency: the apply carried a version that is no longer current.
    case conflict(String)
    case notFound(String)
    /// The database itself failed (disk, corruption): the message names the file.
    case storage(String)
    /// The store cannot take writes now (etcd without quorum): 503 `store-unavailable`.
    case unavailable(String)

    public var description: String {
        switch self {
        case .conflict(let message), .notFound(let message), .storage(let message), .unavailable(let message): message
        }
    }
}
