import Foundation
import MeshCertificates
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore

/// The `ResourceStore` of control-plane replicas: everything under one etcd prefix, shared by
/// every replica that names it.
///
/// Keys (`P` is the prefix): `P/resources/<Kind>/<name>` (the resource's JSON),
/// `P/registrations/<name>` (with an etcd lease of TTL + grace: while it lives the instance is
/// registered), `P/alive/<name>` (with a lease of the TTL: while it lives the instance is
/// healthy; a heartbeat renews both, on any replica), `P/tokens/<id>`,
/// `P/bootstrap` (CA root, CA key, admin token) and `P/version` (moved by a bare version bump).
///
/// - A resource's `resourceVersion` is its key's etcd mod revision; the store's version is the
///   revision of the newest change to a resource or registration (`EtcdMirror.version`).
/// - Every write is one etcd request or transaction; a conditional one (a resource applied with
///   its `resourceVersion`, a token use, first-start bootstrap) carries its condition as a txn
///   compare, so two replicas never both win: there is no read-then-write.
/// - Reads come from the `EtcdMirror`, which one watch keeps; a write returns once the mirror
///   holds it, so a replica reads its own writes. When etcd loses quorum, writes fail with
///   `StoreError.unavailable` and reads go on serving the mirror.
/// - The watch resumes from the mirror's revision after a broken stream; if etcd compacted
///   that revision away, the mirror reloads everything and reports the difference, so no change
///   is skipped.
///
/// Writes are `async` end to end: the etcd client's own event loop does the I/O and a writer
/// suspends, holding no thread, until its answer and then its echo arrive; so concurrent writes
/// (registrations from many sidecars) overlap their round trips. The watch lives entirely on
/// that loop.
public final class EtcdResourceStore: ResourceStore, @unchecked Sendable {
    public let client: EtcdClient
    /// Without a trailing slash: `/mesh`.
    public let prefix: String
    /// The lease of a sidecar's registration.
    public let registrationTTL: Duration
    /// How long an instance stays (unhealthy) after its TTL lapsed, before it is removed.
    public let registrationGrace: Duration
    private let mirror: EtcdMirror
    private let observers = NIOLockedValueBox<[@Sendable (StoreChange) -> Void]>([])
    private let watchState = NIOLockedValueBox(WatchState())
    /// How long a write waits for the watch to bring it back before returning anyway.
    private let echoTimeout: TimeAmount = .seconds(5)

    private struct WatchState {
        var stream: EtcdWatchStream?
        var needsReload = false
        var stopped = false
        var pause = TimeAmount.milliseconds(50)
        /// A revision etcd had under the prefix that the watch had not delivered at the last check.
        var undelivered: Int64?
    }

    /// How often the watch is checked against etcd (a member cut off from the others keeps a
    /// stream open that delivers nothing).
    private let livenessInterval: TimeAmount

    /// Reads the whole prefix and starts watching it; fails if no endpoint answers.
    public init(
        client: EtcdClient, prefix: String = "/mesh", registrationTTL: Duration = .seconds(15), registrationGrace: Duration = .seconds(60),
        livenessInterval: TimeAmount = .seconds(5)
    ) async throws(StoreError) {
        self.livenessInterval = livenessInterval
        var trimmed = prefix
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        if !trimmed.hasPrefix("/") { trimmed = "/" + trimmed }
        self.prefix = trimmed
        self.client = client
        self.registrationTTL = registrationTTL
        self.registrationGrace = registrationGrace
        let resources = trimmed + "/resources/", registrations = trimmed + "/registrations/", version = trimmed + "/version"
        let alive = trimmed + "/alive/"
        mirror = EtcdMirror { key in
            key.hasPrefix(resources) || key.hasPrefix(registrations) || key.hasPrefix(alive) || key == version
        }
        try await reload()
        openWatch()
        scheduleLivenessCheck()
    }

    deinit {
        stop()
    }

    /// Ends the watch (tests; a serving process just exits).
    public func stop() {
        let stream = watchState.withLockedValue { state in
            state.stopped = true
            return state.stream
        }
        stream?.cancel()
    }

    // MARK: Keys

    private var rangeStart: String { prefix + "/" }
    /// The first key after every `prefix/…` key ('0' follows '/').
    private var rangeEnd: String { prefix + "0" }
    private func resourceKey(_ kind: ResourceKind, _ name: String) -> String { "\(prefix)/resources/\(kind.rawValue)/\(name)" }
    private func registrationKey(_ name: String) -> String { "\(prefix)/registrations/\(name)" }
    private func aliveKey(_ name: String) -> String { "\(prefix)/alive/\(name)" }
    private func tokenKey(_ id: String) -> String { "\(prefix)/tokens/\(id)" }
    var bootstrapKey: String { prefix + "/bootstrap" }
    private var versionKey: String { prefix + "/version" }

    // MARK: Resources

    public func currentVersion() throws(StoreError) -> Int64 { mirror.version }

    public func apply(_ resources: [MeshResource]) async throws(StoreError) -> [MeshResource] {
        let bodies = resources.map { $0.withResourceVersion(nil).json }
        let keys = resources.map { resourceKey($0.kind, $0.name) }
        // Nothing new: answer from the mirror without a write (as SQLite does), which is the
        // same as this apply having happened at the mirror's revision.
        let unchanged: [MeshResource]? = mirror.read { entries in
            var stamped: [MeshResource] = []
            for (index, resource) in resources.enumerated() {
                guard let kv = entries[keys[index]], String(decoding: kv.value, as: UTF8.self) == bodies[index] else { return nil }
                if let wanted = resource.resourceVersion, wanted != String(kv.modRevision) { return nil }
                stamped.append(resource.withResourceVersion(String(kv.modRevision)))
            }
            return stamped
        }
        if let unchanged { return unchanged }

        var compares: [[String: Any]] = []
        var checked: [Int] = []
        for (index, resource) in resources.enumerated() {
            guard let wanted = resource.resourceVersion else { continue }
            // A version that is no revision can match nothing: compare with an impossible one.
            compares.append(Self.compare(keys[index], modRevision: Int64(wanted) ?? -1))
            checked.append(index)
        }
        let puts = zip(keys, bodies).map { Self.put($0, value: Data($1.utf8)) }
        let answer = try await txn(compares: compares, success: puts, failure: checked.map { Self.range(keys[$0]) })
        guard answer.succeeded else {
            for (position, index) in checked.enumerated() {
                let resource = resources[index], wanted = resource.resourceVersion ?? ""
                guard let current = answer.ranges[safe: position]?.first else {
                    throw StoreError.conflict(
                        "\(resource.kind) \(resource.name): resourceVersion \(wanted) given but it does not exist; "
                            + "drop resourceVersion to create it")
                }
                if String(current.modRevision) != wanted {
                    throw StoreError.conflict(
                        "\(resource.kind) \(resource.name): resourceVersion \(wanted) is stale (now \(current.modRevision)); "
                            + "get it again, re-apply your change, or drop resourceVersion to overwrite")
                }
            }
            throw StoreError.conflict("the apply's resourceVersions changed while it was applied; get them again")
        }
        await awaitEcho(answer.header.revision)
        return resources.map { $0.withResourceVersion(String(answer.header.revision)) }
    }

    public func list(kind: ResourceKind?) throws(StoreError) -> [MeshResource] {
        let start = kind.map { "\(prefix)/resources/\($0.rawValue)/" } ?? "\(prefix)/resources/"
        let stored = mirror.read { entries in entries.filter { $0.key.hasPrefix(start) }.map(\.value) }
        var resources: [MeshResource] = []
        for kv in stored { resources.append(try Self.decode(kv)) }
        return resources.sorted { ($0.kind.rawValue, $0.name) < ($1.kind.rawValue, $1.name) }
    }

    public func get(kind: ResourceKind, name: String) throws(StoreError) -> MeshResource? {
        guard let kv = mirror.entry(resourceKey(kind, name)) else { return nil }
        return try Self.decode(kv)
    }

    public func delete(kind: ResourceKind, name: String) async throws(StoreError) {
        let answer = try await call("/v3/kv/deleterange", ["key": Self.base64(resourceKey(kind, name))], as: EtcdDeleteResponse.self)
        guard answer.deleted > 0 else { throw StoreError.notFound("\(kind) \"\(name)\" not found") }
        await awaitEcho(answer.header.revision)
    }

    // MARK: Registrations

    public var expiresRegistrations: Bool { true }

    private struct StoredRegistration: Codable {
        var instance: String
        var dependencies: [String]?
    }

    public func recordRegistryChange(saving: [Registration], removing: [String]) async throws(StoreError) -> Int64 {
        var operations: [[String: Any]] = []
        for registration in saving {
            let name = registration.instance.name
            // Both leases in one round trip's time.
            async let keptLease = grantResult(registrationTTL + registrationGrace)
            async let aliveLease = grantResult(registrationTTL)
            let kept = try await keptLease.get(), alive = try await aliveLease.get()
            let stored = StoredRegistration(
                instance: MeshResource.instance(registration.instance).json, dependencies: registration.dependencies)
            let value = (try? JSONEncoder().encode(stored)) ?? Data()
            operations.append(Self.put(registrationKey(name), value: value, lease: kept))
            operations.append(Self.put(aliveKey(name), value: Data(), lease: alive))
        }
        for name in removing {
            operations.append(["request_delete_range": ["key": Self.base64(registrationKey(name))]])
            operations.append(["request_delete_range": ["key": Self.base64(aliveKey(name))]])
        }
        if operations.isEmpty { operations.append(Self.put(versionKey, value: Data("bump".utf8))) }
        let answer = try await txn(compares: [], success: operations, failure: [])
        await awaitEcho(answer.header.revision)
        return mirror.version
    }

    /// A new lease of `duration` (whole seconds, at least 1).
    private func grant(_ duration: Duration) async throws(StoreError) -> Int64 {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return try await call("/v3/lease/grant", ["TTL": max(1, Int64(seconds.rounded(.up)))], as: EtcdLeaseGrantResponse.self).id
    }

    /// `grant` as a value, for `async let` (which would lose the error's type).
    private func grantResult(_ duration: Duration) async -> Result<Int64, StoreError> {
        do { return .success(try await grant(duration)) } catch { return .failure(error) }
    }

    private func renewResult(_ lease: Int64) async -> Result<Bool, StoreError> {
        do { return .success(try await renew(lease)) } catch { return .failure(error) }
    }

    /// Every saved registration, unhealthy when its alive key lapsed.
    public func registrations() throws(StoreError) -> [Registration] {
        let start = prefix + "/registrations/", alive = prefix + "/alive/"
        let (stored, living) = mirror.read { entries in
            (entries.filter { $0.key.hasPrefix(start) }.map(\.value), Set(entries.keys.filter { $0.hasPrefix(alive) }))
        }
        return stored.compactMap { kv in
            guard var registration = Self.registration(kv) else { return nil }
            registration.instance.health = living.contains(aliveKey(registration.instance.name)) ? .healthy : .unhealthy
            return registration
        }.sorted { $0.instance.name < $1.instance.name }
    }

    /// A heartbeat: renews the registration's lease and its alive lease (a new alive key if it
    /// lapsed: the instance is healthy again for every replica). False if the registration is gone.
    public func keepAlive(registration name: String) async throws(StoreError) -> Bool {
        guard let kv = mirror.entry(registrationKey(name)) else { return false }
        guard kv.lease != 0 else { return true }
        // Both leases renewed together (one round trip's time); the alive one only counts if
        // the registration's own lease still lived.
        let aliveLease = mirror.entry(aliveKey(name)).map(\.lease) ?? 0
        async let keptRenewal = renewResult(kv.lease)
        async let aliveRenewal: Result<Bool, StoreError> = aliveLease == 0 ? .success(false) : renewResult(aliveLease)
        guard try await keptRenewal.get() else { return false }
        if try await aliveRenewal.get() { return true }
        let lease = try await grant(registrationTTL)
        let answer = try await txn(compares: [], success: [Self.put(aliveKey(name), value: Data(), lease: lease)], failure: [])
        await awaitEcho(answer.header.revision)
        return true
    }

    /// Whether the lease still lived (and now has its full TTL again).
    private func renew(_ lease: Int64) async throws(StoreError) -> Bool {
        let answer = try await call("/v3/lease/keepalive", ["ID": String(lease)], as: EtcdKeepAliveResponse.self)
        return (answer.result?.ttl ?? 0) > 0
    }

    public func observeChanges(_ handler: @escaping @Sendable (StoreChange) -> Void) {
        observers.withLockedValue { $0.append(handler) }
    }

    private static func registration(_ kv: EtcdKeyValue) -> Registration? {
        guard let stored = try? JSONDecoder().decode(StoredRegistration.self, from: kv.value),
            case .instance(let instance)? = try? MeshResourceDecoder.decodeJSON(stored.instance).first
        else { return nil }
        return Registration(instance: instance, dependencies: stored.dependencies)
    }

    // MARK: Join tokens

    private struct StoredToken: Codable {
        var id: String
        var secretHash: String
        var service: String
        var expiresAt: Int64
        var usesLeft: Int?
        var revoked: Bool

        init(_ token: JoinToken) {
            id = token.id
            secretHash = token.secretHash
            service = token.service
            expiresAt = token.expiresAt
            usesLeft = token.usesLeft
            revoked = token.revoked
        }

        var token: JoinToken {
            JoinToken(id: id, secretHash: secretHash, service: service, expiresAt: expiresAt, usesLeft: usesLeft, revoked: revoked)
        }
    }

    public func saveJoinToken(_ token: JoinToken) async throws(StoreError) {
        let key = tokenKey(token.id)
        let answer = try await txn(
            compares: [Self.compareAbsent(key)], success: [Self.put(key, value: Self.encode(token))], failure: [])
        guard answer.succeeded else { throw StoreError.conflict("join token \(token.id) already exists") }
        await awaitEcho(answer.header.revision)
    }

    public func joinToken(secretHash: String) throws(StoreError) -> JoinToken? {
        tokens().first { $0.secretHash == secretHash }
    }

    public func joinTokens() throws(StoreError) -> [JoinToken] {
        tokens().sorted { ($0.service, $0.expiresAt, $0.id) < ($1.service, $1.expiresAt, $1.id) }
    }

    private func tokens() -> [JoinToken] {
        let start = prefix + "/tokens/"
        let stored = mirror.read { entries in entries.filter { $0.key.hasPrefix(start) }.map(\.value) }
        return stored.compactMap { try? JSONDecoder().decode(StoredToken.self, from: $0.value).token }
    }

    public func revokeJoinToken(id: String) async throws(StoreError) -> JoinToken {
        let outcome: JoinToken? = try await updateToken(id: id) { token in
            var revoked = token
            revoked.revoked = true
            return (revoked == token ? nil : revoked, revoked)
        }
        guard let outcome else { throw StoreError.notFound("join token \"\(id)\" not found") }
        return outcome
    }

    public func consumeJoinToken(id: String, now: Int64) async throws(StoreError) -> JoinTokenUse {
        let outcome: JoinTokenUse? = try await updateToken(id: id) { token in
            let state = token.state(now: now)
            guard state == .active else { return (nil, .refused(token, state)) }
            guard let usesLeft = token.usesLeft else { return (nil, .consumed(token)) }
            var used = token
            used.usesLeft = usesLeft - 1
            return (used, .consumed(used))
        }
        return outcome ?? .unknown
    }

    /// Reads the token (the mirror's copy, or etcd's if the mirror has none or lost a race),
    /// lets `change` decide, and writes its new value only if the token is still what was read:
    /// a txn compare on its mod revision, retried on the fresh value. Nil: no such token.
    private func updateToken<Outcome>(
        id: String, _ change: (JoinToken) -> (write: JoinToken?, outcome: Outcome)
    ) async throws(StoreError) -> Outcome? {
        let key = tokenKey(id)
        var current = mirror.entry(key)
        if current == nil { current = try await fetch(key) }
        for _ in 0..<20 {
            guard let kv = current, let token = try? JSONDecoder().decode(StoredToken.self, from: kv.value).token else {
                return nil
            }
            let (write, outcome) = change(token)
            guard let write else { return outcome }
            let answer = try await txn(
                compares: [Self.compare(key, modRevision: kv.modRevision)], success: [Self.put(key, value: Self.encode(write))],
                failure: [Self.range(key)])
            if answer.succeeded {
                await awaitEcho(answer.header.revision)
                return outcome
            }
            current = answer.ranges.first?.first
        }
        throw StoreError.unavailable("join token \(id) kept changing under concurrent updates; try again")
    }

    private static func encode(_ token: JoinToken) -> Data {
        (try? JSONEncoder().encode(StoredToken(token))) ?? Data()
    }

    // MARK: Bootstrap: the CA and the admin token every replica shares

    public struct SharedSecrets: Codable, Sendable, Equatable {
        public var rootPEM: String
        public var rootKeyPEM: String
        public var adminToken: String

        public init(rootPEM: String, rootKeyPEM: String, adminToken: String) {
            self.rootPEM = rootPEM
            self.rootKeyPEM = rootKeyPEM
            self.adminToken = adminToken
        }
    }

    /// Stores `proposed` if the prefix has no CA and admin token yet, in one create-if-absent
    /// transaction: of replicas starting together exactly one wins and every one gets the
    /// winner's. `created` says whether that was `proposed`. `propose` runs only when no
    /// secrets are stored yet (making a CA key is not free).
    public func loadOrCreateSecrets(propose: () throws -> SharedSecrets) async throws -> (secrets: SharedSecrets, created: Bool) {
        if let stored = try await fetch(bootstrapKey) {
            return (try Self.decodeSecrets(stored.value), false)
        }
        let proposed = try propose()
        let value = try JSONEncoder().encode(proposed)
        let answer = try await txn(
            compares: [Self.compareAbsent(bootstrapKey)], success: [Self.put(bootstrapKey, value: value)],
            failure: [Self.range(bootstrapKey)])
        if answer.succeeded { return (proposed, true) }
        guard let winner = answer.ranges.first?.first else { throw StoreError.storage("\(bootstrapKey) vanished while read") }
        return (try Self.decodeSecrets(winner.value), false)
    }

    /// The shared CA and admin token as the server uses them: created here (a new CA and
    /// token) when the prefix has none yet, loaded otherwise.
    public func loadOrCreateAuthority(trustDomain: String) async throws -> DataDirectory.Loaded {
        let (secrets, created) = try await loadOrCreateSecrets {
            let authority = try CertificateAuthority.create(trustDomain: trustDomain)
            return SharedSecrets(rootPEM: authority.rootPEM, rootKeyPEM: authority.rootKeyPEM, adminToken: DataDirectory.makeSecret())
        }
        guard CertificateMinting.certificate(in: secrets.rootPEM, matching: secrets.rootKeyPEM) != nil else {
            throw StoreError.storage("the CA key stored in etcd under \(bootstrapKey) is the key of no certificate stored beside it")
        }
        let authority = CertificateAuthority(rootPEM: secrets.rootPEM, rootKeyPEM: secrets.rootKeyPEM, trustDomain: trustDomain)
        return DataDirectory.Loaded(authority: authority, adminToken: secrets.adminToken, created: created)
    }

    private static func decodeSecrets(_ value: Data) throws(StoreError) -> SharedSecrets {
        do { return try JSONDecoder().decode(SharedSecrets.self, from: value) } catch {
            throw StoreError.storage("the CA and admin token stored in etcd do not decode: \(error)")
        }
    }

    // MARK: The watch

    /// Reads the whole prefix into the mirror and reports what differs.
    @discardableResult
    private func reload() async throws(StoreError) -> [EtcdMirror.Change] {
        let answer = try await call(
            "/v3/kv/range", ["key": Self.base64(rangeStart), "range_end": Self.base64(rangeEnd)], as: EtcdRangeResponse.self)
        return mirror.load(answer.kvs, revision: answer.header.revision)
    }

    /// Keeps one watch open from the mirror's revision, across broken streams and members that
    /// go away; reloads first when etcd compacted the revision it needs. Runs on the etcd
    /// client's event loop, apart from Swift's cooperative pool and whatever runs there.
    private func openWatch() {
        let (stopped, reload) = watchState.withLockedValue { ($0.stopped, $0.needsReload) }
        guard !stopped else { return }
        guard !reload else {
            client.callFuture(
                "/v3/kv/range", ["key": Self.base64(rangeStart), "range_end": Self.base64(rangeEnd)]
            ).whenComplete { result in
                guard case .success(let raw) = result, let answer = try? JSONDecoder().decode(EtcdRangeResponse.self, from: raw) else {
                    self.retryWatch()
                    return
                }
                let changes = self.mirror.load(answer.kvs, revision: answer.header.revision)
                self.watchState.withLockedValue { $0.needsReload = false }
                self.publish(changes)
                self.openWatch()
            }
            return
        }
        client.watch(key: rangeStart, rangeEnd: rangeEnd, startRevision: mirror.revision + 1) { [weak self] message in
            self?.received(message)
        }.whenComplete { result in
            switch result {
            case .failure:
                self.retryWatch()
            case .success(let stream):
                let stopped = self.watchState.withLockedValue { state in
                    state.stream = stream
                    return state.stopped
                }
                if stopped { stream.cancel() }
                stream.ended.whenComplete { _ in
                    self.watchState.withLockedValue { $0.pause = .milliseconds(50) }
                    self.retryWatch()
                }
            }
        }
    }

    /// Every `livenessInterval`: the newest mod revision under the prefix, read through etcd's
    /// leader. One the watch still has not delivered at the next check means the stream went
    /// silent (its member is cut off, or stopped): it is closed, and reopened (from the mirror's
    /// revision) on the endpoint that answers.
    private func scheduleLivenessCheck() {
        client.eventLoop.scheduleTask(in: livenessInterval) { self.checkLiveness() }
    }

    private func checkLiveness() {
        guard !watchState.withLockedValue({ $0.stopped }) else { return }
        client.callFuture("/v3/kv/range", [
            "key": Self.base64(rangeStart), "range_end": Self.base64(rangeEnd), "sort_order": "DESCEND", "sort_target": "MOD",
            "limit": "1", "keys_only": true,
        ]).whenComplete { result in
            defer { self.scheduleLivenessCheck() }
            guard case .success(let raw) = result, let answer = try? JSONDecoder().decode(EtcdRangeResponse.self, from: raw),
                let newest = answer.kvs.first?.modRevision
            else { return }
            let delivered = self.mirror.revision
            let silent = self.watchState.withLockedValue { state -> EtcdWatchStream? in
                if let undelivered = state.undelivered, undelivered > delivered {
                    state.undelivered = nil
                    return state.stream
                }
                state.undelivered = newest > delivered ? newest : nil
                return nil
            }
            silent?.cancel()
        }
    }

    /// Opens the watch again after a pause that doubles (up to 1 s) while etcd is unreachable.
    private func retryWatch() {
        let pause = watchState.withLockedValue { state in
            let pause = state.pause
            state.pause = min(state.pause * 2, .seconds(1))
            return pause
        }
        client.eventLoop.scheduleTask(in: pause) { self.openWatch() }
    }

    /// One watch message, on the etcd client's loop.
    private func received(_ message: EtcdWatchMessage) {
        if message.canceled {
            // Compacted past our revision (or refused): read everything again, then watch on.
            watchState.withLockedValue { state in
                state.needsReload = true
                state.stream?.cancel()
            }
            return
        }
        guard !message.events.isEmpty else { return }
        publish(mirror.apply(message.events, progress: message.revision))
    }

    private func publish(_ changes: [EtcdMirror.Change]) {
        let registrations = prefix + "/registrations/", resources = prefix + "/resources/", alive = prefix + "/alive/"
        var change = StoreChange()
        var versioned = false
        for item in changes {
            if item.key.hasPrefix(alive) {
                versioned = true
                let name = String(item.key.dropFirst(alive.count))
                if item.kv == nil { change.unhealthyRegistrations.append(name) } else { change.healthyRegistrations.append(name) }
            } else if item.key.hasPrefix(registrations) {
                versioned = true
                if let kv = item.kv, var registration = Self.registration(kv) {
                    let name = registration.instance.name
                    registration.instance.health = mirror.entry(aliveKey(name)) == nil ? .unhealthy : .healthy
                    change.savedRegistrations.append(registration)
                } else {
                    change.removedRegistrations.append(String(item.key.dropFirst(registrations.count)))
                }
            } else if item.key.hasPrefix(resources) {
                versioned = true
                let instances = "\(resources)\(ResourceKind.instance.rawValue)/"
                guard item.key.hasPrefix(instances) else { continue }
                if let kv = item.kv, case .instance(let instance)? = try? Self.decode(kv) {
                    change.storedInstances.append(instance)
                } else if item.kv == nil {
                    change.deletedInstances.append(String(item.key.dropFirst(instances.count)))
                }
            } else if item.key == versionKey {
                versioned = true
            }
        }
        guard versioned else { return }
        for observer in observers.withLockedValue({ $0 }) { observer(change) }
    }

    /// A write of ours at `revision` is readable once the watch brought it back.
    private func awaitEcho(_ revision: Int64) async {
        await mirror.wait(for: revision, timeout: echoTimeout, on: client.eventLoop)
    }

    // MARK: Requests

    private func fetch(_ key: String) async throws(StoreError) -> EtcdKeyValue? {
        try await call("/v3/kv/range", ["key": Self.base64(key)], as: EtcdRangeResponse.self).kvs.first
    }

    private func txn(
        compares: [[String: Any]], success: [[String: Any]], failure: [[String: Any]]
    ) async throws(StoreError) -> EtcdTxnResponse {
        try await call("/v3/kv/txn", ["compare": compares, "success": success, "failure": failure], as: EtcdTxnResponse.self)
    }

    private func call<Answer: Decodable & Sendable>(
        _ path: String, _ body: [String: Any], as type: Answer.Type
    ) async throws(StoreError) -> Answer {
        do {
            return try await client.call(path, body, as: type)
        } catch {
            switch error {
            case .unavailable(let why):
                throw StoreError.unavailable(
                    "etcd (\(client.endpointList)) cannot take writes now: \(why); reads and watches serve this replica's copy")
            case .failed(let why), .invalid(let why):
                throw StoreError.storage("etcd (\(client.endpointList)): \(why)")
            }
        }
    }

    private static func base64(_ key: String) -> String { Data(key.utf8).base64EncodedString() }

    private static func put(_ key: String, value: Data, lease: Int64? = nil) -> [String: Any] {
        var put: [String: Any] = ["key": base64(key), "value": value.base64EncodedString()]
        if let lease { put["lease"] = String(lease) }
        return ["request_put": put]
    }

    private static func range(_ key: String) -> [String: Any] {
        ["request_range": ["key": base64(key)]]
    }

    private static func compare(_ key: String, modRevision: Int64) -> [String: Any] {
        ["key": base64(key), "target": "MOD", "result": "EQUAL", "mod_revision": String(modRevision)]
    }

    /// True while the key has never been created (or was deleted).
    private static func compareAbsent(_ key: String) -> [String: Any] {
        ["key": base64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"]
    }

    private static func decode(_ kv: EtcdKeyValue) throws(StoreError) -> MeshResource {
        do {
            guard let resource = try MeshResourceDecoder.decodeJSON(String(decoding: kv.value, as: UTF8.self)).first else {
                throw StoreError.storage("\(kv.key) holds no resource")
            }
            return resource.withResourceVersion(String(kv.modRevision))
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.storage("\(kv.key) no longer decodes: \(error)")
        }
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
