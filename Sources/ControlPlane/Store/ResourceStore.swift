import SidecarCore

/// Where the control plane keeps what operators applied and the join tokens it issued.
///
/// Every resource carries a `resourceVersion` taken from one global, monotonically increasing
/// counter; every mutation is one transaction (all-or-nothing) and is durable once it returns.
/// A protocol so an etcd backend can join the SQLite one later.
public protocol ResourceStore: Sendable {
    /// The counter's current value: the version of the latest change (0 when empty).
    func currentVersion() throws(StoreError) -> Int64

    /// Creates or updates every resource in one transaction. A resource carrying a
    /// `resourceVersion` must match the stored one (optimistic concurrency); one without
    /// overwrites. Returns the resources as stored, stamped with their versions.
    func apply(_ resources: [MeshResource]) throws(StoreError) -> [MeshResource]

    /// Resources of `kind` (all kinds when nil), ordered by kind and name.
    func list(kind: ResourceKind?) throws(StoreError) -> [MeshResource]

    func get(kind: ResourceKind, name: String) throws(StoreError) -> MeshResource?

    /// Removes one resource; `StoreError.notFound` if absent.
    func delete(kind: ResourceKind, name: String) throws(StoreError)

    /// Records a registry change in one transaction: saves the registrations that were added
    /// or changed, drops the removed ones, and advances the global version without touching a
    /// resource, returning the new value (every change a sidecar sees has one ordered version).
    /// Registrations are kept so that a restarted control plane still knows every instance
    /// (each gets a full TTL again) instead of pushing endpoint lists without them.
    func recordRegistryChange(saving: [Registration], removing: [String]) throws(StoreError) -> Int64

    /// Every saved registration, ordered by name.
    func registrations() throws(StoreError) -> [Registration]

    func saveJoinToken(_ token: JoinToken) throws(StoreError)
    /// The token whose secret hashes to `secretHash`, if stored (expired ones included).
    func joinToken(secretHash: String) throws(StoreError) -> JoinToken?
}

extension ResourceStore {
    /// Advances the global version alone.
    public func bumpVersion() throws(StoreError) -> Int64 {
        try recordRegistryChange(saving: [], removing: [])
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

/// A join token as stored: only the hash of its secret, the service it proves, its expiry.
public struct JoinToken: Sendable, Equatable {
    public var secretHash: String
    public var service: String
    /// Unix seconds; nil never expires.
    public var expiresAt: Int64?

    public init(secretHash: String, service: String, expiresAt: Int64?) {
        self.secretHash = secretHash
        self.service = service
        self.expiresAt = expiresAt
    }
}

/// Why the store refused or failed; mapped to HTTP statuses in `APIError`.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Optimistic concurrency: the apply carried a version that is no longer current.
    case conflict(String)
    case notFound(String)
    /// The database itself failed (disk, corruption): the message names the file.
    case storage(String)

    public var description: String {
        switch self {
        case .conflict(let message), .notFound(let message), .storage(let message): message
        }
    }
}
