import Foundation
import MeshTestSupport
import Testing

/// The mesh the zero-loss drills run on: a real control plane, a dynamic `web` sidecar and
/// dynamic `payments` sidecars, each payments instance with its own app (named after the
/// instance, so a response says which instance served it) and its own state directory.
final class ZeroLossDrill: @unchecked Sendable {
    struct Instance {
        var name: String
        var process: SidecarProcess
        var app: TestHTTPApp?
        var inbound: Int
        var outbound: Int
        var admin: Int
    }

    let mesh: DynamicModeTests.Mesh
    private(set) var web: Instance!
    private var started: [Instance] = []

    /// payments-1 (labels `version: v1`, or `paymentsLabels`) and web, once web's calls reach it.
    init(serverArguments: [String] = [], paymentsTCP: Bool = false) async throws {
        mesh = try await DynamicModeTests.Mesh(serverArguments: serverArguments)
        try await mesh.declarePayments()
        let payments = try await startPayments("payments-1", version: "v1", tcp: paymentsTCP)
        // Not a connection to the inbound: a probe of the mTLS port counts as a failed handshake.
        #expect(await payments.process.waitUntilListening(ports: [payments.admin]), "\(payments.process.logs)")
        web = try await start("web", service: "web", app: 1)
        #expect(await web.process.waitUntilListening(ports: [web.outbound, web.admin]), "\(web.process.logs)")
        let call = ["-H", "Host: payments", "http://127.0.0.1:\(web.outbound)/pay"]
        #expect(await eventuallySlowly(timeout: .seconds(15)) { (try? await curl(call))?.status == 200 }, "\(web.process.logs)")
    }

    /// A payments instance with its own app; `tcp` makes its inbound carry bytes, not HTTP.
    func startPayments(_ name: String, version: String, tcp: Bool = false) async throws -> Instance {
        let app = try await TestHTTPApp(name: name)
        return try await start(
            name, service: "payments", app: app.port, appHandle: app, inboundExtra: tcp ? ", protocol: tcp" : "",
            controlPlaneExtra: ", labels: { version: \(version) }")
    }

    private func start(
        _ name: String, service: String, app: Int, appHandle: TestHTTPApp? = nil, inboundExtra: String = "",
        controlPlaneExtra: String = ""
    ) async throws -> Instance {
        let token = try await mesh.token(service)
        let (inbound, outbound, admin) = (try freeLoopbackPort(), try freeLoopbackPort(), try freeLoopbackPort())
        let process = try SidecarProcess(configYAML: """
            service: \(service)
            inbound:  { listen: 127.0.0.1:\(inbound), app: 127.0.0.1:\(app)\(inboundExtra) }
            outbound: { listen: 127.0.0.1:\(outbound) }
            admin:    { listen: 127.0.0.1:\(admin) }
            controlPlane: { address: \(mesh.server.url), tokenFile: \(token), caFile: ca.pem, stateDir: state-\(name)\(controlPlaneExtra) }
            """, in: mesh.directory, name: name, extraArguments: ["--access-log", "off"])
        let instance = Instance(name: name, process: process, app: appHandle, inbound: inbound, outbound: outbound, admin: admin)
        started.append(instance)
        return instance
    }

    /// Web's calls to payments under load, until stopped (at most 90 s): one keep-alive
    /// connection, at most ~100 requests/s, so the five drills running at once leave the
    /// shared cores to the suites beside them.
    func load(path: String = "/pay") -> RequestLoop {
        RequestLoop(port: web.outbound, host: "payments", path: path, connections: 1, pace: .milliseconds(10))
    }

    /// `control-plane get proxies -o json`, or nil when it does not answer.
    func proxies() async -> [[String: Any]]? {
        guard let answer = try? await mesh.server.cli(["get", "proxies", "-o", "json"]), answer.status == 0 else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [[String: Any]]
    }

    /// Whether every proxy in `get proxies` has applied the current version, `count` of them.
    func everyProxyCurrent(count: Int, atLeast version: Int64 = 0) async -> Bool {
        guard let list = await proxies(), list.count == count else { return false }
        return list.allSatisfy {
            guard let applied = ($0["appliedVersion"] as? String).flatMap({ Int64($0) }),
                let current = ($0["currentVersion"] as? String).flatMap({ Int64($0) })
            else { return false }
            return applied == current && applied >= version && $0["stale"] as? Bool == false
        }
    }

    func apply(_ yaml: String) async throws {
        let applied = try await mesh.server.cli(["apply", "-f", "-"], input: yaml)
        #expect(applied.status == 0, "\(applied.stderr)")
    }

    /// The store version now, from `get proxies` (every proxy's `currentVersion`).
    func currentVersion() async -> Int64 {
        (await proxies() ?? []).compactMap { ($0["currentVersion"] as? String).flatMap { Int64($0) } }.max() ?? 0
    }

    func instance(named name: String) -> Instance? { started.first { $0.name == name } }

    func stop() {
        for instance in started { instance.process.stop() }
        mesh.stop()
    }
}

/// The sum of every series of `name` in an exposition (a labelled counter), nil when the
/// family is not declared at all.
func metricSum(_ exposition: String, _ name: String) -> Double? {
    guard exposition.split(separator: "\n").contains(where: { $0.hasPrefix("# TYPE \(name) ") }) else { return nil }
    return exposition.split(separator: "\n")
        .filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        .reduce(0, +)
}

/// `eventually` for conditions that start a process (the CLI, curl): polled every 200 ms, not
/// every 10, so five drills polling at once do not take the shared cores from other suites.
func eventuallySlowly(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(200))
    }
    return try await condition()
}

/// How many lines of `logs` contain `text`.
func occurrences(of text: String, in logs: String) -> Int {
    logs.split(separator: "\n").filter { $0.contains(text) }.count
}
