import Foundation
import MeshTestSupport
import Testing

/// Real gRPC through the mesh: Python `grpcio` apps (Tests/GRPC/grpc_peer.py, compiled from
/// echo.proto by grpcio-tools at start) behind `payments` sidecars with `inbound.protocol:
/// grpc`, and a `web` sidecar whose outbound port the grpcio client calls with h2c and
/// `:authority: payments`. Caller → web (h2c) → mTLS `h2` → payments → the app (h2c).
final class GRPCMesh {
    /// The venv's python with grpcio and grpcio-tools.
    static let python: String? = {
        let path = packageRoot.appendingPathComponent(".venv/bin/python3").path
        guard FileManager.default.isExecutableFile(atPath: path) else { return nil }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: path)
        probe.arguments = ["-c", "import grpc, grpc_tools"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return nil }
        probe.waitUntilExit()
        return probe.terminationStatus == 0 ? path : nil
    }()
    static let peer = packageRoot.appendingPathComponent("Tests/GRPC/grpc_peer.py").path

    /// One grpcio server (an app instance) and the port it listens on.
    final class App {
        let process: ChildProcess
        let port: Int
        let name: String

        init(name: String, arguments: [String] = []) async throws {
            let python = try #require(GRPCMesh.python)
            port = try freeLoopbackPort()
            self.name = name
            process = try ChildProcess([python, GRPCMesh.peer, "serve", "--port", String(port), "--name", name] + arguments)
            let ready = await eventually(timeout: .seconds(30)) { [process] in process.stdout.contains("\"ready\"") }
            #expect(ready, "grpc app \(name) did not start: \(process.stderr)")
        }

        /// How many calls of `method` this instance answered (it prints one line per call).
        func calls(_ method: String) -> Int {
            process.stdout.split(separator: "\n").filter { $0.contains("\"call\": \"\(method)\"") }.count
        }

        deinit { process.terminate() }
    }

    let directory = TemporaryDirectory()
    let pki = TestPKI()
    let apps: [App]
    private(set) var sidecars: [SidecarProcess] = []
    private(set) var web: SidecarProcess!
    let webOut: Int
    let webAdmin: Int
    private(set) var paymentsAdmins: [Int] = []
    /// Instance resources (YAML list items) for every payments sidecar.
    private(set) var instances = ""

    /// - Parameters:
    ///   - apps: the payments app instances (one sidecar each, labelled `instance: <name>`).
    ///   - webResources: YAML list items for web's `resources:` (routes to payments).
    ///   - paymentsResources: YAML list items for each payments sidecar's `resources:`.
    init(apps: [App], webResources: String = "", paymentsResources: String = "") async throws {
        self.apps = apps
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "web").write(to: certs, name: "web")
        try pki.issue(service: "payments").write(to: certs, name: "payments")
        for app in apps {
            let inbound = try freeLoopbackPort(), admin = try freeLoopbackPort()
            paymentsAdmins.append(admin)
            let sidecar = try SidecarProcess(configYAML: """
                service: payments
                inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app.port), protocol: grpc }
                outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                admin:    { listen: 127.0.0.1:\(admin) }
                tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
                \(paymentsResources.isEmpty ? "" : "resources:\n" + paymentsResources)
                """, in: directory, name: "payments-\(app.name)")
            sidecars.append(sidecar)
            #expect(await sidecar.waitUntilListening(ports: [inbound]), "\(sidecar.logs)")
            instances += "\n  - { kind: Instance, service: payments, address: 127.0.0.1, port: \(inbound), labels: { instance: \(app.name) } }"
        }
        webOut = try freeLoopbackPort()
        webAdmin = try freeLoopbackPort()
        web = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(webOut) }
            admin:    { listen: 127.0.0.1:\(webAdmin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:\(instances)
            \(webResources)
            """, in: directory, name: "web")
        sidecars.append(web)
        #expect(await web.waitUntilListening(ports: [webOut]), "\(web.logs)")
    }

    deinit {
        sidecars.forEach { $0.stop() }
        directory.remove()
    }

    /// One grpcio client call through web's outbound (see grpc_peer.py `call`): its JSON result.
    func call(
        _ callCase: String, authority: String = "payments", arguments: [String] = [], timeout: Duration = .seconds(120)
    ) async throws -> [String: Any] {
        try await Self.call(callCase, target: "127.0.0.1:\(webOut)", authority: authority, arguments: arguments, timeout: timeout)
    }

    /// One grpcio client call to `target` (`arguments` may add `--ca FILE`: TLS with that root).
    static func call(
        _ callCase: String, target: String, authority: String, arguments: [String] = [], timeout: Duration = .seconds(120)
    ) async throws -> [String: Any] {
        let python = try #require(Self.python)
        let result = try await ChildProcess.run(
            [python, Self.peer, "call", "--target", target, "--authority", authority] + arguments + [callCase],
            timeout: timeout)
        let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return try #require(object, "grpc client printed no result: \(result.stdout) \(result.stderr)")
    }

    func webMetrics() async throws -> String { try await curl(["http://127.0.0.1:\(webAdmin)/metrics"]).body }
    func paymentsMetrics(_ index: Int = 0) async throws -> String {
        try await curl(["http://127.0.0.1:\(paymentsAdmins[index])/metrics"]).body
    }
}
