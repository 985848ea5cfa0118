import ControlPlane
import Foundation
import MeshAPI
import MeshTestSupport
import SidecarCore
import Testing

/// Control-plane replicas over a real 3-member etcd cluster (`--store etcd`): real `etcd`
/// processes and real `control-plane` binaries on loopback. Skipped, saying why, only when
/// the etcd binary is absent (CI installs `etcd-server`).
@Suite(.serialized, .enabled(if: EtcdCluster.binary != nil, Comment(rawValue: EtcdCluster.missing)))
struct EtcdReplicaTests {
    static let route = "kind: Route\nservice: payments\nrules: [ { match: { pathPrefix: / }, backends: [ { subset: {}, weight: 100 } ] } ]\n"

    /// A replica in its own data dir over `cluster`, under `prefix`.
    func replica(_ cluster: EtcdCluster, prefix: String, extra: [String] = []) async throws -> (ControlPlaneServer, TemporaryDirectory) {
        let directory = TemporaryDirectory()
        let server = try await ControlPlaneServer(
            dataDir: directory.path,
            extraArguments: ["--store", "etcd", "--etcd-endpoints", cluster.endpoints, "--etcd-prefix", prefix] + extra)
        return (server, directory)
    }

    static func prefix() -> String { "/mesh-test-\(UUID().uuidString.prefix(8))" }

    func joinToken(_ server: ControlPlaneServer, service: String) async throws -> String {
        let token = try await server.cli(["token", "create", "--service", service, "--ttl", "1h"])
        #expect(token.status == 0, "\(token.stderr)")
        return token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func applyOnOneReplicaReachesAWatcherOfTheOtherWithinOneSecond() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let prefix = Self.prefix()
        let (a, directoryA) = try await replica(cluster, prefix: prefix)
        defer { a.stop(); directoryA.remove() }
        let (b, directoryB) = try await replica(cluster, prefix: prefix)
        defer { b.stop(); directoryB.remove() }

        // A token made on A is good on B; the watch goes to B.
        let web = try b.client(token: try await joinToken(a, service: "web"))
        let first = try await web.send(.GET, "/v1/snapshot/web")
        #expect(first.status == 200, "\(first.body)")
        let version = try #require(jsonObject(first.body)["version"] as? String)
        async let watched = web.send(.GET, "/v1/snapshot/web?version=\(version)")
        let adminB = try b.client(token: b.adminToken)
        #expect(await eventually {
            (try? await adminB.send(.GET, "/metrics"))?.body.contains("control_plane_watchers 1") == true
        })

        let adminA = try a.client(token: a.adminToken)
        let applied = try await adminA.send(.POST, "/v1/apply", body: Self.route, contentType: "application/yaml")
        let changed = ContinuousClock.now
        #expect(applied.status == 200, "\(applied.body)")
        let response = try await watched
        let elapsed = changed.duration(to: .now)
        #expect(response.status == 200)
        #expect(response.body.contains("\"Route\""), "\(response.body)")
        #expect(elapsed < .seconds(1), "took \(elapsed)")
        // Both replicas report the same resourceVersion: etcd's mod revision.
        let onA = try await adminA.send(.GET, "/v1/resources/route/payments").body
        let onB = try await adminB.send(.GET, "/v1/resources/route/payments").body
        #expect(onA == onB)
    }

    @Test func staleApplyOnTheOtherReplicaIsAConflict() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let prefix = Self.prefix()
        let (a, directoryA) = try await replica(cluster, prefix: prefix)
        defer { a.stop(); directoryA.remove() }
        let (b, directoryB) = try await replica(cluster, prefix: prefix)
        defer { b.stop(); directoryB.remove() }

        let adminA = try a.client(token: a.adminToken), adminB = try b.client(token: b.adminToken)
        #expect(try await adminA.send(.POST, "/v1/apply", body: Self.route, contentType: "application/yaml").status == 200)
        var read = ""
        #expect(await eventually {
            read = (try? await adminB.send(.GET, "/v1/resources/route/payments"))?.body ?? ""
            return read.contains("resourceVersion")
        })
        let version = try #require(jsonObject(read)["resourceVersion"] as? String)
        // A write on A (without a version: overwrite) makes B's copy stale.
        let changed = Self.route.replacingOccurrences(of: "pathPrefix: /", with: "pathPrefix: /v2")
        #expect(try await adminA.send(.POST, "/v1/apply", body: changed, contentType: "application/yaml").status == 200)
        let stale = try await adminB.send(
            .POST, "/v1/apply", body: "resourceVersion: \"\(version)\"\n" + Self.route, contentType: "application/yaml")
        #expect(stale.status == 409, "\(stale.body)")
        #expect(stale.body.contains("stale"), "\(stale.body)")
        // With the current version it goes through, on either replica.
        let current = try #require(jsonObject(try await adminA.send(.GET, "/v1/resources/route/payments").body)["resourceVersion"] as? String)
        let fresh = try await adminB.send(
            .POST, "/v1/apply", body: "resourceVersion: \"\(current)\"\n" + Self.route, contentType: "application/yaml")
        #expect(fresh.status == 200, "\(fresh.body)")
    }

    @Test func twoReplicasStartedAtOnceOnAnEmptyPrefixShareOneCAAndToken() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let prefix = Self.prefix()
        async let first = replica(cluster, prefix: prefix)
        async let second = replica(cluster, prefix: prefix)
        let (a, directoryA) = try await first, (b, directoryB) = try await second
        defer { a.stop(); directoryA.remove(); b.stop(); directoryB.remove() }

        #expect(!a.caPEM.isEmpty)
        #expect(a.caPEM == b.caPEM)
        #expect(!a.adminToken.isEmpty)
        #expect(a.adminToken == b.adminToken)
        // Exactly one of them created them.
        let created = [a, b].filter { $0.process.stdout.contains("created admin token") }
        #expect(created.count == 1, "\(a.process.stdout)\n\(b.process.stdout)")
        // The shared token works on both; neither wrote a CA key to its data dir.
        for server in [a, b] {
            #expect(try await server.client(token: a.adminToken).send(.GET, "/v1/resources").status == 200)
            #expect(!FileManager.default.fileExists(atPath: server.dataDir + "/ca.key"))
        }
    }

    @Test func losingQuorumRefusesWritesWith503ThenWritesResume() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let (server, directory) = try await replica(cluster, prefix: Self.prefix())
        defer { server.stop(); directory.remove() }
        let admin = try server.client(token: server.adminToken)
        #expect(try await admin.send(.POST, "/v1/apply", body: Self.route, contentType: "application/yaml").status == 200)

        // One member down: a majority remains.
        cluster.kill(0)
        let oneDown = Self.route.replacingOccurrences(of: "pathPrefix: /", with: "pathPrefix: /one")
        #expect(await eventually(timeout: .seconds(15)) {
            (try? await admin.send(.POST, "/v1/apply", body: oneDown, contentType: "application/yaml"))?.status == 200
        })

        // Two down: no quorum. Writes are refused with 503 store-unavailable; reads still answer.
        cluster.kill(1)
        let twoDown = Self.route.replacingOccurrences(of: "pathPrefix: /", with: "pathPrefix: /two")
        let refused = try await admin.send(.POST, "/v1/apply", body: twoDown, contentType: "application/yaml")
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.body.contains("store-unavailable"), "\(refused.body)")
        let read = try await admin.send(.GET, "/v1/resources/route/payments")
        #expect(read.status == 200)
        #expect(read.body.contains("/one"), "\(read.body)")

        // Both back: writes go through again, without restarting the replica.
        try cluster.start(0)
        try cluster.start(1)
        #expect(await eventually(timeout: .seconds(30)) {
            (try? await admin.send(.POST, "/v1/apply", body: twoDown, contentType: "application/yaml"))?.status == 200
        })
        #expect(try await admin.send(.GET, "/v1/resources/route/payments").body.contains("/two"))
    }
}
