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

    /// ... and so one dashboard session key: a session signed in on A opens B's pages.
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
        let signedIn = try await curl(["-k", "--data-urlencode", "token=\(a.adminToken)", a.url + "/ui/login"])
        let cookie = try #require(signedIn.headers["set-cookie"], "\(signedIn.status) \(signedIn.body)")
        let session = String(cookie.split(separator: ";")[0])
        let onB = try await curl(["-k", "-H", "Cookie: \(session)", b.url + "/ui/proxies"])
        #expect(onB.status == 200 && onB.body.contains("<h1>Proxies</h1>"), "\(onB.status) \(onB.headers)")
        // A forged one is not (B checks the signature, not a list).
        let forged = session.dropLast(4) + (session.hasSuffix("0000") ? "1111" : "0000")
        #expect(try await curl(["-k", "-H", "Cookie: \(forged)", b.url + "/ui/proxies"]).status == 303)
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

    @Test func sidecarsFollowTheOtherReplicaWhenTheirsIsKilledAndSeeAppliesMadeOnAnother() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let prefix = Self.prefix()
        let (a, directoryA) = try await replica(cluster, prefix: prefix)
        defer { a.stop(); directoryA.remove() }
        let (b, directoryB) = try await replica(cluster, prefix: prefix)
        defer { b.stop(); directoryB.remove() }
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try a.caPEM.write(toFile: directory.path + "/ca.pem", atomically: true, encoding: .utf8)

        let app = try await TestHTTPApp(name: "payments-app")
        var sidecars: [SidecarProcess] = []
        defer { sidecars.forEach { $0.stop() } }
        // Both sidecars list B first: they watch, register and heartbeat through B.
        func sidecar(_ service: String, app: Int) async throws -> (SidecarProcess, inbound: Int, outbound: Int) {
            let (inbound, outbound, admin) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
            let token = try await joinToken(a, service: service)
            try token.write(toFile: directory.path + "/\(service).token", atomically: true, encoding: .utf8)
            let process = try SidecarProcess(configYAML: """
                service: \(service)
                inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app) }
                outbound: { listen: 127.0.0.1:\(outbound) }
                admin:    { listen: 127.0.0.1:\(admin) }
                controlPlane: { address: [ \(b.url), \(a.url) ], tokenFile: \(service).token, caFile: ca.pem }
                """, in: directory, name: service)
            sidecars.append(process)
            return (process, inbound, outbound)
        }
        let declared = try await a.cli(["apply", "-f", "-"], input: "kind: Service\nname: payments\n")
        #expect(declared.status == 0, "\(declared.stderr)")
        let payments = try await sidecar("payments", app: app.port)
        let web = try await sidecar("web", app: 1)
        #expect(await payments.0.waitUntilListening(ports: [payments.inbound]), "\(payments.0.logs)")
        #expect(await web.0.waitUntilListening(ports: [web.outbound]), "\(web.0.logs)")
        let call = ["-H", "Host: payments", "http://127.0.0.1:\(web.outbound)/pay"]
        #expect(await eventually(timeout: .seconds(15)) { (try? await curl(call))?.status == 200 }, "\(web.0.logs)")

        // An apply taken by A reaches the traffic of sidecars that watch B.
        let deny = "kind: AuthorizationPolicy\nservice: payments\ndefault: deny\nallow: [ { from: [ billing ] } ]\n"
        let denied = try await a.cli(["apply", "-f", "-"], input: deny)
        let applied = ContinuousClock.now
        #expect(denied.status == 0, "\(denied.stderr)")
        #expect(await eventually(timeout: .seconds(5)) { (try? await curl(call))?.status == 403 })
        let elapsed = applied.duration(to: .now)
        #expect(elapsed < .seconds(1), "took \(elapsed)")
        let removed = try await a.cli(["delete", "authorizationpolicy", "payments"])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(await eventually(timeout: .seconds(5)) { (try? await curl(call))?.status == 200 })

        // B dies: no request fails while the sidecars move to A.
        b.kill9()
        let statuses = StatusLog()
        let deadline = ContinuousClock.now + .seconds(4)
        while ContinuousClock.now < deadline { statuses.append((try? await curl(call))?.status ?? 0) }
        #expect(!statuses.values.isEmpty)
        #expect(statuses.values.allSatisfy { $0 == 200 }, "\(statuses.values)")

        // A shows both proxies, each at A's current version (they heartbeat and watch through A).
        #expect(await eventually(timeout: .seconds(20)) {
            guard let proxies = try? await a.cli(["get", "proxies", "-o", "json"]), proxies.status == 0,
                let list = try? JSONSerialization.jsonObject(with: Data(proxies.stdout.utf8)) as? [[String: Any]]
            else { return false }
            let services = Set(list.compactMap { $0["service"] as? String })
            let current = list.allSatisfy { ($0["appliedVersion"] as? String) == ($0["currentVersion"] as? String) }
            return services == ["web", "payments"] && current
        }, "\(web.0.logs)")
        // An apply on A now still reaches them.
        #expect(try await a.cli(["apply", "-f", "-"], input: deny).status == 0)
        #expect(await eventually(timeout: .seconds(5)) { (try? await curl(call))?.status == 403 })
    }

    @Test func etcdOverTLSWithAClientCertificate() async throws {
        let cluster = try await EtcdCluster(size: 1, tls: true)
        defer { cluster.stop() }
        let tls = try #require(cluster.tls)
        let (server, directory) = try await replica(
            cluster, prefix: Self.prefix(),
            extra: ["--etcd-ca-file", tls.ca, "--etcd-cert-file", tls.clientCertificate, "--etcd-key-file", tls.clientKey])
        defer { server.stop(); directory.remove() }
        let admin = try server.client(token: server.adminToken)
        #expect(try await admin.send(.POST, "/v1/apply", body: Self.route, contentType: "application/yaml").status == 200)
        #expect(server.process.stdout.contains("store: etcd https://127.0.0.1:"), "\(server.process.stdout)")

        // Without a client certificate etcd refuses the handshake: serve says so and stops.
        let refused = TemporaryDirectory()
        defer { refused.remove() }
        let bare = try await ChildProcess.run([
            ControlPlaneServer.binary, "serve", "--data-dir", refused.path, "--listen", "127.0.0.1:0", "--store", "etcd",
            "--etcd-endpoints", cluster.endpoints, "--etcd-ca-file", tls.ca,
        ])
        #expect(bare.status != 0)
        #expect(bare.stderr.contains("cannot read the store from etcd"), "\(bare.stderr)")
    }
}
