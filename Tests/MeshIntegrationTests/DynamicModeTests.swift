import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// Dynamic mode end to end: a real control plane and two sidecars that hold nothing but a
/// join token and the CA. Identity, endpoints and policy all arrive from the control plane,
/// changes take effect while traffic flows, and a stopping sidecar leaves the registry at once.
@Suite(.serialized) struct DynamicModeTests {
    final class Mesh: @unchecked Sendable {
        let directory: TemporaryDirectory
        var server: ControlPlaneServer

        init(serverArguments: [String] = []) async throws {
            directory = TemporaryDirectory()
            server = try await ControlPlaneServer(dataDir: directory.path + "/control-plane", extraArguments: serverArguments)
            try server.caPEM.write(toFile: directory.path + "/ca.pem", atomically: true, encoding: .utf8)
        }

        func token(_ service: String) async throws -> String {
            let created = try await server.cli(["token", "create", "--service", service, "--ttl", "1h"])
            #expect(created.status == 0, "\(created.stderr)")
            let path = "\(service).token"
            try created.stdout.write(toFile: directory.path + "/" + path, atomically: true, encoding: .utf8)
            return path
        }

        /// A dynamic-mode sidecar: its listeners on fresh loopback ports, its token and the CA.
        func sidecar(
            _ service: String, app: Int, controlPlaneExtra: String = "", tokenFile: String? = nil
        ) async throws -> Sidecar {
            let (inbound, outbound, admin) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
            var token = tokenFile ?? ""
            if tokenFile == nil { token = try await self.token(service) }
            let process = try SidecarProcess(configYAML: """
                service: \(service)
                inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app) }
                outbound: { listen: 127.0.0.1:\(outbound) }
                admin:    { listen: 127.0.0.1:\(admin) }
                controlPlane: { address: \(server.url), tokenFile: \(token), caFile: ca.pem\(controlPlaneExtra) }
                """, in: directory, name: service)
            return (process, inbound, outbound, admin)
        }

        typealias Sidecar = (process: SidecarProcess, inbound: Int, outbound: Int, admin: Int)
        private var started: [SidecarProcess] = []
        private var apps: [TestHTTPApp] = []

        /// payments (its app answering) and web, both dynamic, once web's calls reach payments.
        func webCallingPayments(
            web webExtra: String = "", payments paymentsExtra: String = ""
        ) async throws -> (web: Sidecar, payments: Sidecar, call: [String]) {
            let app = try await TestHTTPApp(name: "payments-app")
            apps.append(app)
            let payments = try await sidecar("payments", app: app.port, controlPlaneExtra: paymentsExtra)
            let web = try await sidecar("web", app: 1, controlPlaneExtra: webExtra)
            started += [payments.process, web.process]
            #expect(await payments.process.waitUntilListening(ports: [payments.inbound]), "\(payments.process.logs)")
            #expect(await web.process.waitUntilListening(ports: [web.outbound, web.admin]), "\(web.process.logs)")
            let call = ["-H", "Host: payments", "http://127.0.0.1:\(web.outbound)/pay"]
            #expect(await eventually(timeout: .seconds(15)) { (try? await curl(call))?.status == 200 }, "\(web.process.logs)")
            return (web, payments, call)
        }

        func declarePayments() async throws {
            let declared = try await server.cli(["apply", "-f", "-"], input: "kind: Service\nname: payments\n")
            #expect(declared.status == 0, "\(declared.stderr)")
        }

        func stop() {
            for process in started { process.stop() }
            server.stop()
            directory.remove()
        }
    }

    @Test func twoSidecarsTakeIdentityEndpointsAndPolicyFromTheControlPlane() async throws {
        let mesh = try await Mesh()
        defer { mesh.stop() }
        // The operator declares the service; payments registers itself; web learns its
        // endpoint and calls it over mTLS as web.
        try await mesh.declarePayments()
        let (web, payments, call) = try await mesh.webCallingPayments(
            web: ", dependencies: [ payments ]", payments: ", labels: { version: v1 }")
        let answer = try await curl(call)
        #expect(answer.body.contains("app=payments-app"))
        #expect(answer.body.contains("caller=web"), "\(answer.body)")

        // Policy pushed while traffic flows: payments now refuses web.
        let applied = try await mesh.server.cli(["apply", "-f", "-"], input: """
            kind: AuthorizationPolicy
            service: payments
            default: deny
            allow: [ { from: [ billing ] } ]
            """)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(await eventually(timeout: .seconds(10)) {
            let response = try? await curl(call)
            return response?.status == 403 && response?.headers["x-mesh-error"] == "forbidden"
        })

        // Both proxies report the version they applied; neither is stale. Their heartbeats
        // carry their certificates' expiry, which the control plane shows.
        var listed: [[String: Any]] = []
        #expect(await eventually(timeout: .seconds(15)) {
            guard let proxies = try? await mesh.server.cli(["get", "proxies", "-o", "json"]), proxies.status == 0,
                let list = try? JSONSerialization.jsonObject(with: Data(proxies.stdout.utf8)) as? [[String: Any]]
            else { return false }
            listed = list
            let services = Set(list.compactMap { $0["service"] as? String })
            let current = list.allSatisfy { ($0["appliedVersion"] as? String) == ($0["currentVersion"] as? String) }
            return services == ["web", "payments"] && current && list.allSatisfy { ($0["stale"] as? Bool) == false }
                && list.allSatisfy { $0["certificateExpiresAt"] is Int }
        })
        let metrics = try await curl(["http://127.0.0.1:\(web.admin)/metrics"])
        #expect(metricValue(metrics.body, "sidecar_control_plane_connected") == 1)
        #expect((metricValue(metrics.body, "sidecar_config_version") ?? 0) > 1)
        let expiry = try #require(metricValue(metrics.body, "sidecar_cert_expiry_timestamp_seconds"))
        #expect(expiry > Date().timeIntervalSince1970 + 3600)
        let reported = listed.first { $0["service"] as? String == "web" }?["certificateExpiresAt"] as? Int
        #expect(reported.map(Double.init) == expiry, "what web's heartbeat said is the certificate it serves with")
        let config = try await curl(["http://127.0.0.1:\(web.admin)/config"])
        #expect(config.body.contains("payments-127.0.0.1-\(payments.inbound)"), "\(config.body)")

        // A stopping sidecar deregisters before it drains: web stops picking it at once.
        payments.process.signal(SIGTERM)
        #expect(await eventually(timeout: .seconds(5)) {
            let response = try? await curl(call)
            return response?.status == 503 && response?.headers["x-mesh-error"] == "no-healthy-endpoint"
        })
        #expect(await payments.process.process.wait() == 0, "\(payments.process.logs)")
        let proxies = try await mesh.server.cli(["get", "proxies"])
        #expect(!proxies.stdout.contains("payments"), "\(proxies.stdout)")
    }

    @Test func aSidecarRenewsItsCertificateAtHalfLifeWithoutDroppingTraffic() async throws {
        // Certificates valid for 10 s: renewal due after about 5.
        let mesh = try await Mesh(serverArguments: ["--certificate-lifetime", "10s"])
        defer { mesh.stop() }
        let (web, _, call) = try await mesh.webCallingPayments()
        let first = try #require(
            metricValue(try await curl(["http://127.0.0.1:\(web.admin)/metrics"]).body, "sidecar_cert_expiry_timestamp_seconds"))
        #expect(first > 0)

        #expect(await eventually(timeout: .seconds(20)) {
            let body = (try? await curl(["http://127.0.0.1:\(web.admin)/metrics"]))?.body ?? ""
            return (metricValue(body, "sidecar_cert_expiry_timestamp_seconds") ?? 0) > first
        }, "\(web.process.logs)")
        #expect(web.process.logs.contains("certificate renewed"))
        // New connections handshake with the new certificates on both sides.
        #expect(try await curl(call).status == 200)
        // Both sidecars renew at their own half-life: payments may come a moment after web.
        #expect(await eventually(timeout: .seconds(20)) {
            let issued = (try? await curl(["-k", mesh.server.url + "/metrics"]))?.body ?? ""
            return (metricValue(issued, "control_plane_certificates_issued_total") ?? 0) >= 4
        })
    }

    @Test func aControlPlaneRestartDropsNoEndpointAndSidecarsCarryOn() async throws {
        let mesh = try await Mesh()
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let (web, _, call) = try await mesh.webCallingPayments()

        // While the control plane is down the data plane keeps its last configuration.
        mesh.server.kill9()
        let metricsURL = "http://127.0.0.1:\(web.admin)/metrics"
        #expect(await eventually(timeout: .seconds(20)) {
            metricValue((try? await curl([metricsURL]))?.body ?? "", "sidecar_control_plane_connected") == 0
        })
        #expect(try await curl(call).status == 200)

        // Back on the same port and data dir: registrations survived, so no snapshot pushed
        // after the restart lacks payments' endpoint; every call during the recovery succeeds.
        let port = mesh.server.port
        mesh.server = try await ControlPlaneServer(dataDir: mesh.directory.path + "/control-plane", listen: "127.0.0.1:\(port)")
        let statuses = StatusLog()
        let recovered = await eventually(timeout: .seconds(20)) {
            statuses.append((try? await curl(call))?.status ?? 0)
            return metricValue((try? await curl([metricsURL]))?.body ?? "", "sidecar_control_plane_connected") == 1
        }
        #expect(recovered, "\(web.process.logs)")
        // A few heartbeat periods (a third of the 15 s TTL) after reconnecting.
        let settled = ContinuousClock.now + .seconds(6)
        while ContinuousClock.now < settled { statuses.append((try? await curl(call))?.status ?? 0) }
        #expect(statuses.values.allSatisfy { $0 == 200 }, "\(statuses.values)")
        let proxies = try await mesh.server.cli(["get", "proxies"])
        #expect(proxies.stdout.contains("payments") && proxies.stdout.contains("web"), "\(proxies.stdout)")
    }

    @Test func aRefusedJoinTokenEndsTheStartWithTheControlPlanesReason() async throws {
        let mesh = try await Mesh()
        defer { mesh.stop() }
        try "not-a-token\n".write(toFile: mesh.directory.path + "/bogus.token", atomically: true, encoding: .utf8)
        let sidecar = try await mesh.sidecar("web", app: 1, tokenFile: "bogus.token")
        defer { sidecar.process.stop() }
        #expect(await sidecar.process.process.wait() == 2)
        #expect(sidecar.process.logs.contains("control plane refused the certificate"), "\(sidecar.process.logs)")
        #expect(sidecar.process.logs.contains("401"), "\(sidecar.process.logs)")
    }

    @Test func aSidecarWaitsForAnUnreachableControlPlaneAndValidateChecksTheFiles() async throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let pki = TestPKI()
        try pki.rootPEM.write(toFile: directory.path + "/ca.pem", atomically: true, encoding: .utf8)
        try "token\n".write(toFile: directory.path + "/web.token", atomically: true, encoding: .utf8)
        let admin = try freeLoopbackPort()
        let yaml = """
            service: web
            inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            admin:    { listen: 127.0.0.1:\(admin) }
            controlPlane: { address: https://127.0.0.1:\(try freeLoopbackPort()), tokenFile: web.token, caFile: ca.pem }
            """
        let sidecar = try SidecarProcess(configYAML: yaml, in: directory, name: "web")
        defer { sidecar.stop() }
        #expect(await eventually(timeout: .seconds(10)) { sidecar.process.stderr.contains("control plane unreachable, retrying") })
        #expect(sidecar.process.isRunning)

        let valid = try await ChildProcess.run([builtExecutable("sidecar"), "validate", "--config", sidecar.configPath])
        #expect(valid.status == 0, "\(valid.stderr)")
        try "".write(toFile: directory.path + "/web.token", atomically: true, encoding: .utf8)
        let invalid = try await ChildProcess.run([builtExecutable("sidecar"), "validate", "--config", sidecar.configPath])
        #expect(invalid.status == 1)
        #expect(invalid.stderr.contains("web.token: expected one join token"), "\(invalid.stderr)")
    }
}

/// Statuses seen from inside a polling closure.
final class StatusLog: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Int] = []
    func append(_ status: Int) { lock.withLock { recorded.append(status) } }
    var values: [Int] { lock.withLock { recorded } }
}
