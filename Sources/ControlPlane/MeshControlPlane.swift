import Foundation
import MeshAPI
import SidecarCore

/// The control plane's state and every operation the API offers, independent of HTTP: the
/// store, the registry of sidecar instances, the CA, join tokens, snapshots and watches.
///
/// An actor so registry changes and notifications happen in one order. Store writes are
/// `async` (etcd round trips): the actor is free while one is under way, so concurrent
/// registrations overlap their writes. The registry decides before a write is sent, and the
/// version only moves forward (`notify`), whichever write returns first. Errors are
/// `ControlPlaneError`s, in the control plane's terms; `APIRouter` alone turns them into statuses.
///
/// Watches do not queue here to wait or to wake: `watch` passes through the actor once to
/// authorize and acknowledge, then waits in the `SnapshotDistributor`, which asks this actor
/// for each watched service's encoded snapshot once per publication (`publishedSnapshots`).
public actor MeshControlPlane: SnapshotSource {
    /// Who made a request.
    public enum Principal: Sendable, Equatable {
        case admin
        /// A sidecar of this service, proven by its client certificate.
        case service(String)
        /// A sidecar of `service`, proven by the join token `id` (bootstrap: before it has a
        /// certificate). Signing a CSR takes one of the token's uses.
        case joinToken(id: String, service: String)

        /// The service a sidecar principal acts for; nil for the admin.
        public var serviceName: String? {
            switch self {
            case .admin: nil
            case .service(let service), .joinToken(_, let service): service
            }
        }
    }

    nonisolated public let store: any ResourceStore
    nonisolated public let authority: CertificateAuthority
    nonisolated public let metrics: ControlPlaneMetrics
    nonisolated public let distributor: SnapshotDistributor
    /// What the dashboard's live pages wait on: version moves, acknowledgements, rejections.
    nonisolated public let changes = MeshChangeFeed()
    nonisolated let adminToken: String
    private var registry: RegistryStateMachine
    /// Operator-applied Instances that set `ttl`: the same rules, renewed by re-applying.
    private var leases: RegistryStateMachine
    nonisolated private let registrySettings: RegistryStateMachine.Settings
    private var pushTracker = PushTracker()
    /// The store's version, kept here so reads need no store query: this actor makes every
    /// change to the store, or hears of it (`notify` records each new version, never an older one).
    private var version: Int64

    public init(
        store: any ResourceStore, authority: CertificateAuthority, adminToken: String,
        registrySettings: RegistryStateMachine.Settings = .init(), metrics: ControlPlaneMetrics = ControlPlaneMetrics()
    ) throws(ControlPlaneError) {
        self.store = store
        self.authority = authority
        self.adminToken = adminToken
        self.metrics = metrics
        // Changes other replicas make (and registrations whose lease expired) come from the
        // store in order, one at a time, through one stream; observed before the first read, so
        // none falls between that read and the observation (a change seen twice is harmless).
        let (changes, continuation) = AsyncStream.makeStream(of: StoreChange.self)
        store.observeChanges { continuation.yield($0) }
        var registry = RegistryStateMachine(settings: registrySettings)
        // Registrations survive a restart, each with a full TTL: a live sidecar's next heartbeat
        // finds it, a gone one expires as usual.
        do {
            for saved in try store.registrations() {
                _ = registry.register(saved.instance, dependencies: saved.dependencies, now: .now)
                if saved.instance.health == .unhealthy { _ = registry.setHealth(name: saved.instance.name, healthy: false) }
            }
        } catch {
            throw .store(error)
        }
        self.registry = registry
        var leases = RegistryStateMachine(settings: registrySettings)
        // Leases restart on start: an instance gets its full TTL again after a restart.
        for resource in (try? store.list(kind: .instance)) ?? [] {
            Self.renewLease(resource, in: &leases, now: .now)
        }
        self.leases = leases
        self.registrySettings = registrySettings
        let version: Int64
        do { version = try store.currentVersion() } catch { throw .store(error) }
        self.version = version
        self.distributor = SnapshotDistributor(version: version, metrics: metrics)
        distributor.attach(self)
        Task { [weak self] in
            for await change in changes {
                guard let self else { return }
                await self.storeChanged(change)
            }
        }
    }

    /// A shared store (etcd) changed, maybe by another replica: take its registrations into
    /// the registry and move to its version, so this replica's watchers get the change.
    func storeChanged(_ change: StoreChange) {
        for registration in change.savedRegistrations {
            _ = registry.register(registration.instance, dependencies: registration.dependencies, now: .now)
            if registration.instance.health == .unhealthy { _ = registry.setHealth(name: registration.instance.name, healthy: false) }
        }
        for name in change.unhealthyRegistrations { _ = registry.setHealth(name: name, healthy: false) }
        for name in change.healthyRegistrations { _ = registry.setHealth(name: name, healthy: true) }
        for name in change.removedRegistrations { _ = registry.deregister(name: name) }
        // An Instance (re-)applied on any replica renews its `ttl` lease here too; the
        // unhealthy mark a lease expiry writes does not (the grace then runs to removal).
        for instance in change.storedInstances where instance.health != .unhealthy {
            Self.renewLease(.instance(instance), in: &leases, now: .now)
        }
        for name in change.deletedInstances { _ = leases.deregister(name: name) }
        if let current = try? store.currentVersion(), current > version { notify(current) }
    }

    /// How often the registry clock applies the TTL rules: a fifth of the TTL, at most 1 s.
    nonisolated public var tickInterval: Duration {
        min(registrySettings.ttl / 5, .seconds(1))
    }

    // MARK: Resources

    /// Decodes a YAML or JSON body and stores every resource in one transaction.
    public func apply(body: String, json: Bool) async throws(ControlPlaneError) -> [MeshResource] {
        let resources: [MeshResource]
        do {
            resources = json ? try MeshResourceDecoder.decodeJSON(body) : try MeshResourceDecoder.decodeDocuments(yaml: body)
        } catch {
            throw .invalidResources(error)
        }
        guard !resources.isEmpty else { throw .invalid("the body holds no resources") }
        let stored: [MeshResource]
        do { stored = try await store.apply(resources) } catch { throw .store(error) }
        notify(try storedVersion())
        for resource in stored { Self.renewLease(resource, in: &leases, now: .now) }
        return stored
    }

    public func list(kind: ResourceKind?) throws(ControlPlaneError) -> [MeshResource] {
        do { return try store.list(kind: kind) } catch { throw .store(error) }
    }

    public func get(kind: ResourceKind, name: String) throws(ControlPlaneError) -> MeshResource {
        let resource: MeshResource?
        do { resource = try store.get(kind: kind, name: name) } catch { throw .store(error) }
        guard let resource else { throw .notFound("\(kind) \"\(name)\" not found") }
        return resource
    }

    public func delete(kind: ResourceKind, name: String) async throws(ControlPlaneError) {
        do { try await store.delete(kind: kind, name: name) } catch { throw .store(error) }
        if kind == .instance { _ = leases.deregister(name: name) }
        notify(try storedVersion())
    }

    private func storedVersion() throws(ControlPlaneError) -> Int64 {
        do { return try store.currentVersion() } catch { throw .store(error) }
    }

    /// The store moved to `version`: remember it, and let the watchers know (in this same
    /// actor step, so a watch that comes after this change is compared with it). A version at
    /// or below the current one is old news (a write that returned after a later one, or its
    /// echo from the store's watch): nothing moves back.
    private func notify(_ version: Int64) {
        guard version > self.version else { return }
        self.version = version
        pushTracker.changed(version: version, at: .now)
        distributor.changed(version: version)
        changes.changed()
    }

    // MARK: Registry

    public func register(
        _ request: APIMessages.RegisterRequest, principal: Principal
    ) async throws(ControlPlaneError) -> APIMessages.RegisterResponse {
        try authorize(principal, forService: request.service)
        guard (1...65535).contains(request.port) else { throw .invalid("port \(request.port) is out of range 1-65535") }
        guard case .success = HostPort.parse(HostPort(host: request.address, port: request.port).description) else {
            throw .invalid("address \"\(request.address)\" is not an IP address or host name")
        }
        // The same bound as an applied Instance's labels: what we serve must read back.
        if let key = request.labels?.keys.first(where: { $0.count > ConfigReader.maxKeyLength }) {
            throw .invalid("label key \"\(key.prefix(32))…\" is longer than \(ConfigReader.maxKeyLength) characters")
        }
        let instance = Instance(service: request.service, address: request.address, port: request.port, labels: request.labels ?? [:])
        let actions = registry.register(instance, dependencies: request.dependencies, now: .now)
        try await carryOut(actions)
        return APIMessages.RegisterResponse(
            name: instance.name, version: String(version),
            ttlSeconds: registry.settings.ttl.inSeconds)
    }

    public func heartbeat(_ request: APIMessages.HeartbeatRequest, principal: Principal) async throws(ControlPlaneError) {
        guard let entry = registry.entries[request.name] else {
            throw .notFound("instance \"\(request.name)\" is not registered (expired or never registered); register again")
        }
        try authorize(principal, forService: entry.instance.service)
        if store.expiresRegistrations {
            // The registration's lease in the store is what keeps it: whichever replica took it.
            let alive: Bool
            do { alive = try await store.keepAlive(registration: request.name) } catch { throw .store(error) }
            guard alive else {
                _ = registry.deregister(name: request.name)
                throw .notFound("instance \"\(request.name)\" is not registered (its lease expired); register again")
            }
        }
        let applied = request.version.flatMap { Int64($0) }
        let rejection = request.rejectedVersion.flatMap { Int64($0) }.map {
            // A reason is the sidecar's words: bounded, so `get proxies` stays readable.
            RegistryStateMachine.Rejection(version: $0, reason: String((request.rejectedReason ?? "").prefix(500)))
        }
        switch registry.heartbeat(
            name: request.name, appliedVersion: applied, rejection: rejection, certificateExpiresAt: request.certificateExpiresAt,
            now: .now)
        {
        case .unknownInstance:
            throw .notFound("instance \"\(request.name)\" is not registered; register again")
        case .accepted(let actions):
            try await carryOut(actions)
        }
        if let applied { acknowledged(applied, previous: entry.appliedVersion) }
        if applied.map({ $0 != entry.appliedVersion }) == true || rejection != entry.rejection
            || request.certificateExpiresAt.map({ $0 != entry.certificateExpiresAt }) == true
        {
            changes.changed()
        }
    }

    public func deregister(_ request: APIMessages.DeregisterRequest, principal: Principal) async throws(ControlPlaneError) {
        guard let entry = registry.entries[request.name] else {
            throw .notFound("instance \"\(request.name)\" is not registered")
        }
        try authorize(principal, forService: entry.instance.service)
        try await carryOut(registry.deregister(name: request.name))
    }

    /// Runs the TTL rules; the registry clock calls it, tests may too.
    public func tick(now: ContinuousClock.Instant) async {
        // A store that expires registrations itself (etcd leases) removes them for every
        // replica at once; a replica's own clock must not, since heartbeats may go elsewhere.
        if !store.expiresRegistrations { try? await carryOut(registry.tick(now: now)) }
        for action in leases.tick(now: now) {
            try? await expireLease(action)
        }
    }

    /// Starts or renews the lease of an applied Instance with a `ttl`; drops it without one.
    private static func renewLease(_ resource: MeshResource, in leases: inout RegistryStateMachine, now: ContinuousClock.Instant) {
        guard case .instance(let instance) = resource else { return }
        guard let ttl = instance.ttl else {
            _ = leases.deregister(name: instance.name)
            return
        }
        _ = leases.register(instance, dependencies: nil, now: now, ttl: .nanoseconds(ttl.nanoseconds))
    }

    /// A lapsed lease marks the stored Instance unhealthy; after the grace it is deleted.
    private func expireLease(_ action: RegistryStateMachine.Action) async throws(ControlPlaneError) {
        switch action {
        case .becameUnhealthy(let name):
            guard case .instance(var instance)? = try? store.get(kind: .instance, name: name) else { return }
            instance.health = .unhealthy
            do { _ = try await store.apply([.instance(instance.withoutVersion)]) } catch { throw .store(error) }
        case .removed(let name):
            do { try await store.delete(kind: .instance, name: name) } catch { return }
        case .added, .becameHealthy:
            return
        }
        notify(try storedVersion())
    }

    private func acknowledged(_ applied: Int64, previous: Int64?) {
        guard let elapsed = pushTracker.pushDuration(applied: applied, previous: previous, now: .now) else { return }
        metrics.observePush(seconds: elapsed.inSeconds)
    }

    private func carryOut(_ actions: [RegistryStateMachine.Action]) async throws(ControlPlaneError) {
        guard !actions.isEmpty else { return }
        var saving: [Registration] = []
        var removing: [String] = []
        for action in actions {
            switch action {
            case .added(let name):
                if let entry = registry.entries[name] {
                    saving.append(Registration(instance: entry.instance, dependencies: entry.dependencies))
                }
            case .removed(let name):
                removing.append(name)
            case .becameHealthy, .becameUnhealthy:
                continue
            }
        }
        let version: Int64
        do { version = try await store.recordRegistryChange(saving: saving, removing: removing) } catch { throw .store(error) }
        notify(version)
    }

    private func authorize(_ principal: Principal, forService service: String) throws(ControlPlaneError) {
        if let own = principal.serviceName, own != service {
            throw .forbidden("a sidecar of service \(own) may not act for service \(service)")
        }
    }

    public var registeredInstances: [Instance] { registry.instances }

    // MARK: Snapshots

    /// The snapshot of `service` now.
    public func snapshot(service: String) throws(ControlPlaneError) -> MeshSnapshot {
        try snapshots(of: [service])[0]
    }

    /// The snapshots of `services` at the current version, from one read of the store and
    /// one pass over the registry.
    private func snapshots(of services: [String]) throws(ControlPlaneError) -> [MeshSnapshot] {
        let stored = try list(kind: nil)
        // A service's destinations: what its instances declared, together; nil if none did.
        var declared: [String: Set<String>] = [:]
        var registered: [Instance] = []
        registered.reserveCapacity(registry.entries.count)
        for entry in registry.entries.values {
            registered.append(entry.instance)
            if let dependencies = entry.dependencies { declared[entry.instance.service, default: []].formUnion(dependencies) }
        }
        return services.map { service in
            MeshSnapshot.compute(
                service: service, version: version, stored: stored, registered: registered,
                dependencies: declared[service].map { $0.sorted() })
        }
    }

    /// The encoded snapshot per service, valid while `version` is unchanged: every store
    /// change and every registry action (including a changed dependency list) moves it.
    private var snapshotCache: [String: PublishedSnapshot] = [:]

    /// The encoded snapshots of `services` at the current version, each computed and encoded
    /// once however many watchers it goes to. The distributor calls this once per publication.
    public func publishedSnapshots(of services: [String]) -> [PublishedSnapshot] {
        let missing = services.filter { snapshotCache[$0]?.version != version }
        if !missing.isEmpty {
            guard let computed = try? snapshots(of: missing) else { return [] }
            for snapshot in computed { snapshotCache[snapshot.service] = PublishedSnapshot(snapshot) }
        }
        return services.compactMap { snapshotCache[$0] }
    }

    private func publishedSnapshot(service: String) throws(ControlPlaneError) -> PublishedSnapshot {
        if let cached = snapshotCache[service], cached.version == version { return cached }
        let snapshot = PublishedSnapshot(try self.snapshot(service: service))
        snapshotCache[service] = snapshot
        return snapshot
    }

    /// The long-poll watch: the snapshot at once if `knownVersion` is not current, else when
    /// the version moves, or nil after `timeout` without a change.
    ///
    /// Nonisolated: the wait and the wake-up happen in the distributor, so a thousand watchers
    /// woken by one change do not pass through this actor one by one.
    ///
    /// `rejectedVersion`: a snapshot the sidecar refused (it still runs `knownVersion`); the
    /// wait is for a version after that one, so the refused snapshot is not sent again at once.
    nonisolated public func watch(
        service: String, knownVersion: Int64?, rejectedVersion: Int64? = nil, instance: String?, principal: Principal,
        timeout: Duration
    ) async throws(ControlPlaneError) -> PublishedSnapshot? {
        try await beginWatch(service: service, knownVersion: knownVersion, instance: instance, principal: principal)
        let waitAfter = rejectedVersion.map { max($0, knownVersion ?? $0) } ?? knownVersion
        switch await distributor.watch(service: service, knownVersion: waitAfter, timeout: timeout) {
        case .snapshot(let snapshot): return snapshot
        case .changed: return try await publishedSnapshot(service: service)
        case .timedOut: return nil
        }
    }

    /// Checks the sidecar may watch `service`; its request reports the version it applied.
    private func beginWatch(service: String, knownVersion: Int64?, instance: String?, principal: Principal) throws(ControlPlaneError) {
        try authorize(principal, forService: service)
        if let knownVersion, let instance, let entry = registry.entries[instance], entry.instance.service == service {
            let previous = entry.appliedVersion
            registry.acknowledge(name: instance, appliedVersion: knownVersion)
            acknowledged(knownVersion, previous: previous)
            if previous != knownVersion { changes.changed() }
        }
    }

    // MARK: Status

    public func proxies() throws(ControlPlaneError) -> [APIMessages.ProxyStatus] {
        let current = version
        let now = ContinuousClock.now
        return registry.entries.values.sorted { $0.instance.name < $1.instance.name }.map { entry in
            let silence = entry.lastHeartbeat.duration(to: now)
            return APIMessages.ProxyStatus(
                name: entry.instance.name, service: entry.instance.service, address: entry.instance.address,
                port: entry.instance.port, health: entry.instance.health.rawValue,
                appliedVersion: entry.appliedVersion.map(String.init), currentVersion: String(current),
                lastSeenSecondsAgo: silence.inSeconds,
                stale: (entry.appliedVersion ?? -1) < current,
                rejectedVersion: entry.rejection.map { String($0.version) }, rejectedReason: entry.rejection?.reason,
                certificateExpiresAt: entry.certificateExpiresAt)
        }
    }

    public func metricsText() -> String {
        var counts: [String: Int] = [:]
        let applied = (try? store.list(kind: .instance)) ?? []
        let instances = applied.compactMap { resource -> Instance? in
            if case .instance(let instance) = resource { return instance }
            return nil
        } + registry.instances
        for instance in instances { counts["\(instance.service)\u{0}\(instance.health.rawValue)", default: 0] += 1 }
        let rows = counts.map { key, count in
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
            return (service: String(parts[0]), health: String(parts[1]), count: count)
        }
        metrics.setInstanceCounts(rows)
        return metrics.registry.text
    }
}

extension Instance {
    fileprivate var withoutVersion: Instance {
        var copy = self
        copy.resourceVersion = nil
        return copy
    }
}
