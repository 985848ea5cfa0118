import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// The `ResourceStore` contract, run against both backends: SQLite, and etcd (one real
/// one-member cluster for the suite, a fresh prefix per test; two store instances on one
/// prefix stand for two replicas, as two SQLite stores on one file stand for two writers).
/// What one does the other must do the same.
@Suite(.serialized, .sharedEtcdCluster) struct ResourceStoreContractTests {
    /// Two stores over the same data, and what to clean up.
    final class Stores: @unchecked Sendable {
        let first: any ResourceStore
        let second: any ResourceStore
        private let directory = TemporaryDirectory()

        init(_ backend: StoreBackend, registrationTTL: Duration = .seconds(15), grace: Duration = .seconds(60)) async throws {
            let prefix = StoreBackend.freshPrefix()
            first = try await backend.makeStore(
                in: directory, etcdPrefix: prefix, registrationTTL: registrationTTL, registrationGrace: grace)
            second = try await backend.makeStore(
                in: directory, etcdPrefix: prefix, registrationTTL: registrationTTL, registrationGrace: grace)
        }

        func stop() {
            StoreBackend.close(first)
            StoreBackend.close(second)
            directory.remove()
        }
    }

    static let backends = StoreBackend.available

    static func route(_ prefix: String, version: String? = nil) -> MeshResource {
        let yaml = (version.map { "resourceVersion: \"\($0)\"\n" } ?? "")
            + "kind: Route\nservice: payments\nrules: [ { match: { pathPrefix: \(prefix) }, backends: [ { subset: {}, weight: 100 } ] } ]\n"
        return try! MeshResourceDecoder.decodeDocuments(yaml: yaml)[0]
    }

    @Test(arguments: backends) func applyStampsVersionsAndRefusesStaleOnesFromAnyWriter(_ backend: StoreBackend) async throws {
        let stores = try await Stores(backend)
        defer { stores.stop() }
        let (a, b) = (stores.first, stores.second)
        let before = try a.currentVersion()
        let stored = try await a.apply([Self.route("/")])
        let version = try #require(stored.first?.resourceVersion)
        #expect(Int64(version)! > before)
        #expect(try a.currentVersion() == Int64(version))
        #expect(try a.get(kind: .route, name: "payments")?.resourceVersion == version)

        // The same content again changes nothing.
        #expect(try await a.apply([Self.route("/")]).first?.resourceVersion == version)
        #expect(try a.currentVersion() == Int64(version))

        // Another writer moves it on; the first version is now stale for both.
        let newer = try #require(try await b.apply([Self.route("/v2")]).first?.resourceVersion)
        #expect(Int64(newer)! > Int64(version)!)
        for store in [a, b] {
            await #expect {
                try await store.apply([Self.route("/v3", version: version)])
            } throws: { error in
                guard case .conflict(let message) = error as? StoreError else { return false }
                return message.contains("stale")
            }
        }
        await #expect {
            try await a.apply([MeshResourceDecoder.decodeDocuments(yaml: "resourceVersion: \"7\"\nkind: Service\nname: nobody\n")[0]])
        } throws: { error in
            guard case .conflict(let message) = error as? StoreError else { return false }
            return message.contains("does not exist")
        }
        // The other writer's version is current for both (an etcd replica reads it once its watch has it).
        #expect(await eventually { (try? a.get(kind: .route, name: "payments"))??.resourceVersion == newer })
        #expect(try await a.apply([Self.route("/v3", version: newer)]).count == 1)

        // Listing is by kind, then name; delete once, then not found.
        _ = try await a.apply(try MeshResourceDecoder.decodeDocuments(yaml: "kind: Service\nname: b\n---\nkind: Service\nname: a\n"))
        #expect(try a.list(kind: .service).map(\.name) == ["a", "b"])
        try await a.delete(kind: .service, name: "a")
        await #expect(throws: StoreError.self) { try await a.delete(kind: .service, name: "a") }
        #expect(try a.list(kind: .service).map(\.name) == ["b"])
    }

    @Test(arguments: backends) func aOneUseTokenIsTakenOnceByConcurrentWriters(_ backend: StoreBackend) async throws {
        let stores = try await Stores(backend)
        defer { stores.stop() }
        let now = Int64(Date().timeIntervalSince1970)
        let token = JoinToken(secretHash: DataDirectory.hash("once-\(backend)"), service: "web", expiresAt: now + 60, usesLeft: 1)
        try await stores.first.saveJoinToken(token)
        #expect(try stores.first.joinToken(secretHash: token.secretHash)?.id == token.id)
        let pair = [stores.first, stores.second]
        let consumed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<8 {
                let store = pair[index % 2]
                group.addTask {
                    if case .consumed = try await store.consumeJoinToken(id: token.id, now: now) { return true }
                    return false
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(consumed == 1)
        let revoked = try await stores.second.revokeJoinToken(id: token.id)
        #expect(revoked.revoked)
        #expect(try await stores.first.consumeJoinToken(id: "nope", now: now) == .unknown)
        await #expect(throws: StoreError.self) { try await stores.first.revokeJoinToken(id: "nope") }
    }

    @Test(arguments: backends) func registrationsAreSavedAndRemovedAndMoveTheVersion(_ backend: StoreBackend) async throws {
        let stores = try await Stores(backend)
        defer { stores.stop() }
        let instance = Instance(service: "payments", address: "127.0.0.1", port: 16006, labels: ["version": "v1"])
        let before = try stores.first.currentVersion()
        let saved = try await stores.first.recordRegistryChange(
            saving: [Registration(instance: instance, dependencies: ["db"])], removing: [])
        #expect(saved > before)
        #expect(try stores.first.registrations() == [Registration(instance: instance, dependencies: ["db"])])
        let removed = try await stores.first.recordRegistryChange(saving: [], removing: [instance.name])
        #expect(removed > saved)
        #expect(try stores.first.registrations().isEmpty)
        #expect(try await stores.first.bumpVersion() > removed)
    }

    /// etcd alone: a registration's leases are renewed by a heartbeat to any replica; without
    /// one, etcd marks it unhealthy after the TTL (its alive key lapses) and removes it after
    /// the grace, and every replica hears of both; a heartbeat in between makes it healthy.
    @Test(.enabled(if: EtcdCluster.binary != nil, Comment(rawValue: EtcdCluster.missing)))
    func anEtcdRegistrationLivesByItsLeases() async throws {
        // TTL 2 s, not 1: beside the parallel suites on 2 cores, the second replica's watch took
        // over a second to hear of the registration, which had lapsed by then.
        let stores = try await Stores(.etcd, registrationTTL: .seconds(2), grace: .seconds(3))
        defer { stores.stop() }
        let log = ChangeLog()
        stores.second.observeChanges { change in log.append(change) }
        let instance = Instance(service: "payments", address: "127.0.0.1", port: 16006)
        _ = try await stores.first.recordRegistryChange(saving: [Registration(instance: instance, dependencies: nil)], removing: [])
        #expect(await eventually { (try? stores.second.registrations())?.first?.instance.health == .healthy })
        // Renewed through the other replica for longer than TTL + grace: still there, healthy.
        let renewUntil = ContinuousClock.now + .milliseconds(6000)
        while ContinuousClock.now < renewUntil {
            #expect(try await stores.second.keepAlive(registration: instance.name))
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(try stores.first.registrations().first?.instance.health == .healthy)
        // No heartbeats: unhealthy for both after the TTL, then healthy again on a heartbeat.
        #expect(await eventually(timeout: .seconds(10)) { log.unhealthy.contains(instance.name) })
        #expect(await eventually { (try? stores.first.registrations())?.first?.instance.health == .unhealthy })
        #expect(try await stores.first.keepAlive(registration: instance.name))
        #expect(await eventually { log.healthy.contains(instance.name) })
        #expect(await eventually { (try? stores.second.registrations())?.first?.instance.health == .healthy })
        // Silence again: removed after TTL + grace, and reported.
        #expect(await eventually(timeout: .seconds(15)) { log.removed.contains(instance.name) })
        #expect(try stores.first.registrations().isEmpty)
        #expect(try await stores.first.keepAlive(registration: instance.name) == false)
    }
}

/// etcd's watch when its member goes silent without closing the stream, and writers waiting
/// on a silent etcd.
@Suite(.serialized, .enabled(if: EtcdCluster.binary != nil, Comment(rawValue: EtcdCluster.missing)))
struct EtcdWatchLivenessTests {
    /// Writes to an etcd that answers nothing wait without holding a thread: with more of them
    /// under way than the cooperative pool has threads, other tasks still run at once (a
    /// write that blocked its thread until its timeout would stall them for seconds), and each
    /// write fails as `unavailable` after its timeout, not one after the other.
    @Test func writesWaitingOnASilentEtcdHoldNoThread() async throws {
        let cluster = try await EtcdCluster(size: 1)
        defer { cluster.stop() }
        let store = try await EtcdResourceStore(
            client: try EtcdClient(endpoints: try EtcdClient.parseEndpoints(cluster.endpoints), requestTimeout: .seconds(10)),
            prefix: StoreBackend.freshPrefix())
        defer { store.stop() }
        cluster.pause(0)
        defer { cluster.pause(0, false) }
        let writers = 4 * ProcessInfo.processInfo.activeProcessorCount
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: StoreError?.self) { group in
            for index in 0..<writers {
                group.addTask {
                    do {
                        _ = try await store.apply([ResourceStoreContractTests.route("/w\(index)")])
                        return nil
                    } catch let error as StoreError {
                        return error
                    }
                }
            }
            // Give the writers time to be under way, then see that the pool still runs tasks.
            try await Task.sleep(for: .milliseconds(300))
            let asked = ContinuousClock.now
            let answered = await Task.detached { ContinuousClock.now }.value
            // A write holding its thread would stall this for most of the 10 s timeout (9.7 s
            // after these 300 ms); a loaded machine's scheduling alone took 1.3 s once, and 3.2
            // and 4.9 s beside the full parallel suite.
            #expect(asked.duration(to: answered) < .milliseconds(7500), "a task waited \(asked.duration(to: answered)) for a thread")
            var failures = 0
            for try await error in group {
                guard case .unavailable? = error else { Issue.record("expected unavailable, got \(String(describing: error))"); continue }
                failures += 1
            }
            #expect(failures == writers)
        }
        // Side by side, not in turn: all timed out within a few timeouts, not `writers` of them.
        #expect(started.duration(to: .now) < .seconds(10 * 4), "\(started.duration(to: .now))")
    }

    @Test func aWatchWhoseMemberStopsAnsweringIsReplacedAndMissesNothing() async throws {
        let cluster = try await EtcdCluster(size: 3)
        defer { cluster.stop() }
        let prefix = "/liveness-\(UUID().uuidString.prefix(8))"
        // A watches through member 0 (its first endpoint); B writes through members 1 and 2.
        let watching = try await EtcdResourceStore(
            client: try EtcdClient(endpoints: try EtcdClient.parseEndpoints(cluster.endpoints)), prefix: prefix,
            livenessInterval: .milliseconds(300))
        defer { watching.stop() }
        let others = [cluster.endpoint(1), cluster.endpoint(2), cluster.endpoint(0)].joined(separator: ",")
        let writing = try await EtcdResourceStore(client: try EtcdClient(endpoints: try EtcdClient.parseEndpoints(others)), prefix: prefix)
        defer { writing.stop() }

        cluster.pause(0)
        defer { cluster.pause(0, false) }
        _ = try await writing.apply([ResourceStoreContractTests.route("/while-paused")])
        // Its stream is open but silent: the liveness check replaces it through a live member.
        #expect(await eventually(timeout: .seconds(20)) { (try? watching.get(kind: .route, name: "payments")) != nil })
        _ = try await writing.apply([ResourceStoreContractTests.route("/after")])
        // The same deadline as the reconnect above: under a loaded CI machine 5 s ran out.
        #expect(await eventually(timeout: .seconds(20)) {
            (try? watching.get(kind: .route, name: "payments"))??.yaml.contains("/after") == true
        })
    }
}

private final class ChangeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [StoreChange] = []
    func append(_ change: StoreChange) { lock.withLock { changes.append(change) } }
    var removed: [String] { lock.withLock { changes.flatMap(\.removedRegistrations) } }
    var unhealthy: [String] { lock.withLock { changes.flatMap(\.unhealthyRegistrations) } }
    var healthy: [String] { lock.withLock { changes.flatMap(\.healthyRegistrations) } }
}
