import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// Fail-static: a dynamic sidecar restarted while its control plane is down serves from the
/// state it saved (snapshot, certificate and key), says so on `/ready`, and goes live again
/// when the control plane returns. A state file it must not trust is refused with a message.
@Suite(.serialized) struct FailStaticTests {
    static func ready(_ admin: Int) async -> (status: Int, body: String) {
        guard let answer = try? await curl(["http://127.0.0.1:\(admin)/ready"]) else { return (0, "") }
        return (answer.status, answer.body)
    }

    @Test func aSidecarRestartedWithoutControlPlaneServesItsLastKnownGoodStateThenGoesLive() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let (web, _, call) = try await mesh.webCallingPayments()
        #expect(await Self.ready(web.admin).body.contains(#""source":"live""#))

        // The state file is written with the configuration web applied, private to its user.
        let stateFile = mesh.directory.path + "/sidecar-state/web.state"
        #expect(await eventually { FileManager.default.fileExists(atPath: stateFile) })
        let attributes = try FileManager.default.attributesOfItem(atPath: stateFile)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        // Control plane gone, web restarted: it opens its listeners from the saved state.
        mesh.server.kill9()
        let yaml = try String(contentsOfFile: web.process.configPath, encoding: .utf8)
        web.process.stop()
        let restarted = try SidecarProcess(configYAML: yaml, in: mesh.directory, name: "web")
        defer { restarted.stop() }
        #expect(await restarted.waitUntilListening(ports: [web.outbound, web.admin]), "\(restarted.logs)")
        #expect(try await curl(call).status == 200, "\(restarted.logs)")
        let lastKnownGood = await Self.ready(web.admin)
        #expect(lastKnownGood.status == 200)
        #expect(lastKnownGood.body.contains(#""source":"last-known-good""#), "\(lastKnownGood.body)")
        let metricsURL = "http://127.0.0.1:\(web.admin)/metrics"
        #expect(metricValue(try await curl([metricsURL]).body, "sidecar_control_plane_connected") == 0)
        #expect(restarted.logs.contains("serving the last-known-good state"), "\(restarted.logs)")

        // Back on the same port: the sidecar reconnects with its saved certificate and goes live.
        let port = mesh.server.port
        mesh.server = try await ControlPlaneServer(dataDir: mesh.directory.path + "/control-plane", listen: "127.0.0.1:\(port)")
        #expect(await eventually(timeout: .seconds(20)) {
            await Self.ready(web.admin).body.contains(#""source":"live""#)
        }, "\(restarted.logs)")
        #expect(await eventually(timeout: .seconds(10)) {
            metricValue((try? await curl([metricsURL]))?.body ?? "", "sidecar_control_plane_connected") == 1
        })
        #expect(try await curl(call).status == 200)
    }

    /// The drill: with the control plane down, one of two payments sidecars is restarted; the
    /// restarted one comes back from its saved state, and web's calls never fail meanwhile
    /// (a refused connection to the restarting one is retried on the other).
    @Test func restartingOneSidecarWhileTheControlPlaneIsDownLosesNoRequest() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let appA = try await TestHTTPApp(name: "payments-a")
        let paymentsA = try await mesh.sidecar("payments", app: appA.port, controlPlaneExtra: ", stateDir: state-a")
        let yamlA = try String(contentsOfFile: paymentsA.process.configPath, encoding: .utf8)
        defer { paymentsA.process.stop() }
        #expect(await paymentsA.process.waitUntilListening(ports: [paymentsA.inbound, paymentsA.admin]), "\(paymentsA.process.logs)")
        let (web, _, call) = try await mesh.webCallingPayments()
        #expect(await eventually(timeout: .seconds(15)) { FileManager.default.fileExists(atPath: mesh.directory.path + "/state-a/payments.state") })
        // web knows both instances before the control plane goes away.
        #expect(await eventually(timeout: .seconds(15)) {
            let clusters = (try? await curl(["http://127.0.0.1:\(web.admin)/clusters"]))?.body ?? ""
            return clusters.contains("\(paymentsA.inbound)") && clusters.components(separatedBy: "127.0.0.1:").count >= 3
        })
        mesh.server.kill9()

        let statuses = Statuses()
        let load = Task {
            while !Task.isCancelled { statuses.append((try? await curl(call))?.status ?? 0) }
        }
        #expect(await eventually { statuses.count >= 5 })
        paymentsA.process.signal(SIGTERM)
        #expect(await paymentsA.process.process.wait() == 0, "\(paymentsA.process.logs)")
        let restarted = try SidecarProcess(configYAML: yamlA, in: mesh.directory, name: "payments")
        defer { restarted.stop() }
        #expect(await restarted.waitUntilListening(ports: [paymentsA.inbound, paymentsA.admin]), "\(restarted.logs)")
        #expect(await Self.ready(paymentsA.admin).body.contains(#""source":"last-known-good""#), "\(restarted.logs)")
        let after = statuses.count
        #expect(await eventually { statuses.count >= after + 10 })
        load.cancel()
        _ = await load.value
        #expect(statuses.values.allSatisfy { $0 == 200 }, "\(statuses.values)")
    }

    @Test func aSidecarWhoseJoinTokenIsSpentRestartsWithItsSavedCertificate() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        let created = try await mesh.server.cli(["token", "create", "--service", "web", "--ttl", "1h", "--uses", "1"])
        #expect(created.status == 0, "\(created.stderr)")
        try created.stdout.write(toFile: mesh.directory.path + "/web-once.token", atomically: true, encoding: .utf8)
        let web = try await mesh.sidecar("web", app: 1, tokenFile: "web-once.token")
        #expect(await web.process.waitUntilListening(ports: [web.outbound, web.admin]), "\(web.process.logs)")
        #expect(await eventually { FileManager.default.fileExists(atPath: mesh.directory.path + "/sidecar-state/web.state") })

        // The token is used up; the saved certificate still proves who this sidecar is.
        let yaml = try String(contentsOfFile: web.process.configPath, encoding: .utf8)
        web.process.stop()
        let restarted = try SidecarProcess(configYAML: yaml, in: mesh.directory, name: "web")
        defer { restarted.stop() }
        #expect(await restarted.waitUntilListening(ports: [web.outbound, web.admin]), "\(restarted.logs)")
        #expect(restarted.logs.contains("join token refused; asking with the saved certificate"), "\(restarted.logs)")
        #expect(await Self.ready(web.admin).body.contains(#""source":"live""#))
    }

    @Test func whileTheControlPlaneIsAwayRenewalRetriesWithBackoffThenSucceedsWhenItReturns() async throws {
        // Certificates valid for 10 s: renewal due after about 5.
        let mesh = try await DynamicModeTests.Mesh(serverArguments: ["--certificate-lifetime", "10s"])
        defer { mesh.stop() }
        let (web, _, _) = try await mesh.webCallingPayments()
        let metricsURL = "http://127.0.0.1:\(web.admin)/metrics"
        let first = try #require(metricValue(try await curl([metricsURL]).body, "sidecar_cert_expiry_timestamp_seconds"))
        mesh.server.kill9()

        // Retried with backoff (logged each time); the certificate in use stays.
        func failures() -> [String] {
            web.process.logs.split(separator: "\n").filter { $0.contains("certificate renewal failed") }.map(String.init)
        }
        #expect(await eventually(timeout: .seconds(30)) { failures().count >= 3 }, "\(web.process.logs)")
        #expect(metricValue(try await curl([metricsURL]).body, "sidecar_cert_expiry_timestamp_seconds") == first)

        let port = mesh.server.port
        mesh.server = try await ControlPlaneServer(dataDir: mesh.directory.path + "/control-plane", listen: "127.0.0.1:\(port)")
        #expect(await eventually(timeout: .seconds(30)) {
            (metricValue((try? await curl([metricsURL]))?.body ?? "", "sidecar_cert_expiry_timestamp_seconds") ?? 0) > first
        }, "\(web.process.logs)")
        // The log line is read from the sidecar's output after the metric moved: poll for it too.
        #expect(await eventually { web.process.logs.contains("certificate renewed") }, "\(web.process.logs)")
    }

    @Test func aCorruptOrForeignStateFileIsRefusedAndTheSidecarWaitsForTheControlPlane() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let pki = TestPKI()
        try pki.rootPEM.write(toFile: directory.path + "/ca.pem", atomically: true, encoding: .utf8)
        try "token\n".write(toFile: directory.path + "/web.token", atomically: true, encoding: .utf8)
        let state = directory.path + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let controlPlane = "https://127.0.0.1:\(try freeLoopbackPort())"

        func start(_ stateFile: String) async throws -> (SidecarProcess, Int) {
            try stateFile.write(toFile: state + "/web.state", atomically: true, encoding: .utf8)
            let admin = try freeLoopbackPort()
            let sidecar = try SidecarProcess(configYAML: """
                service: web
                inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
                outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                admin:    { listen: 127.0.0.1:\(admin) }
                controlPlane: { address: \(controlPlane), tokenFile: web.token, caFile: ca.pem, stateDir: state }
                """, in: directory, name: "web")
            return (sidecar, admin)
        }

        // Truncated (the checksum line says what the rest must be).
        let (corrupt, corruptAdmin) = try await start("sha256:00ff\n{\"format\":\"mesh-sidecar-state/1\",\"serv")
        defer { corrupt.stop() }
        #expect(await eventually(timeout: .seconds(10)) { corrupt.logs.contains("control plane unreachable, retrying") })
        #expect(corrupt.logs.contains("refusing the saved state"), "\(corrupt.logs)")
        #expect(corrupt.logs.contains("corrupt"), "\(corrupt.logs)")
        #expect(corrupt.process.isRunning)
        #expect(!canConnect(port: corruptAdmin), "no listener opens on a refused state")
        corrupt.stop()

        // Another service's state (a file copied by mistake): refused as foreign.
        let foreign = try await Self.paymentsState(pki: pki)
        let (sidecar, admin) = try await start(foreign)
        defer { sidecar.stop() }
        #expect(await eventually(timeout: .seconds(10)) { sidecar.logs.contains("control plane unreachable, retrying") })
        #expect(sidecar.logs.contains("foreign"), "\(sidecar.logs)")
        #expect(sidecar.logs.contains("service \\\"payments\\\""), "\(sidecar.logs)")
        #expect(!canConnect(port: admin))
    }

    /// A well-formed state file of service payments, made by a real payments sidecar.
    static func paymentsState(pki: TestPKI) async throws -> String {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        let payments = try await mesh.sidecar("payments", app: 1)
        defer { payments.process.stop() }
        let path = mesh.directory.path + "/sidecar-state/payments.state"
        #expect(await eventually(timeout: .seconds(15)) { FileManager.default.fileExists(atPath: path) }, "\(payments.process.logs)")
        return try String(contentsOfFile: path, encoding: .utf8)
    }
}

/// Statuses seen by a load loop, read from the test.
private final class Statuses: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Int] = []
    func append(_ status: Int) { lock.withLock { recorded.append(status) } }
    var values: [Int] { lock.withLock { recorded } }
    var count: Int { lock.withLock { recorded.count } }
}
