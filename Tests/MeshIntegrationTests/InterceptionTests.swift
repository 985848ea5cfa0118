import Foundation
import MeshTestSupport
import Testing

/// Transparent interception for real (DESIGN.md "Transparent interception"): three hosts made
/// of network namespaces on one bridge, A 10.77.0.1 (a client and its sidecar), B 10.77.0.2 (an
/// app on 0.0.0.0:8080 and its sidecar), C 10.77.0.3 (outside the mesh: a plain app on 8081),
/// rules installed with `sidecar iptables`. Unmodified clients (curl, a raw TCP client) run as
/// an ordinary user (nobody); the sidecars run as root, the `--proxy-uid` the rules exempt.
@Suite(.serialized, .enabled(if: NetworkNamespaces.unavailable == nil, Comment(rawValue: NetworkNamespaces.unavailable ?? "")))
final class InterceptionTests {
    let hosts = NetworkNamespaces()
    let directory = TemporaryDirectory()
    let pki = TestPKI()
    var sidecars: [String: SidecarProcess] = [:]
    var apps: [ChildProcess] = []

    /// An app that answers HTTP with who it is and what the mesh told it (`x-mesh-caller`, the
    /// route's `x-routed`), and echoes any other bytes line by line.
    static let app = #"""
        import socket, sys, threading
        def serve(conn):
            with conn:
                f = conn.makefile('rb')
                first = f.readline()
                if first.split(b' ')[0] in (b'GET', b'POST', b'HEAD', b'PUT', b'DELETE'):
                    headers = {}
                    for line in iter(f.readline, b''):
                        if line in (b'\r\n', b'\n'): break
                        name, _, value = line.decode().partition(':')
                        headers[name.strip().lower()] = value.strip()
                    body = ('app=%s caller=%s routed=%s\n' % (sys.argv[1], headers.get('x-mesh-caller', '-'), headers.get('x-routed', '-'))).encode()
                    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n' % len(body) + body)
                else:
                    line = first
                    while line:
                        conn.sendall(line)
                        line = f.readline()
        server = socket.create_server(('0.0.0.0', int(sys.argv[2])))
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
        """#

    /// A raw TCP client: one line out, the first line back (empty when the connection closes).
    static let tcpClient = #"""
        import socket, sys
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
        s.sendall(b'ping-over-the-mesh\n')
        print(s.makefile().readline().strip())
        """#

    init() async throws {
        try await hosts.addHost("a", address: "10.77.0.1/24")
        try await hosts.addHost("b", address: "10.77.0.2/24")
        try await hosts.addHost("c", address: "10.77.0.3/24")
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "a").write(to: certs, name: "a")
        try pki.issue(service: "b").write(to: certs, name: "b")
        try Self.app.write(to: directory.url.appendingPathComponent("app.py"), atomically: true, encoding: .utf8)
        try Self.tcpClient.write(to: directory.url.appendingPathComponent("client.py"), atomically: true, encoding: .utf8)

        try startApp("b", port: 8080)
        try startApp("c", port: 8081)
        try await startSidecar("b", """
            service: b
            inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080, transparent: true }
            outbound: { listen: 127.0.0.1:15001 }
            admin:    { listen: 127.0.0.1:15000 }
            tls:      { cert: certs/b.pem, key: certs/b.key, trustBundle: certs/ca.pem }
            """)
        try await startSidecarA(unknown: "passthrough")
        for (host, port) in [("b", 8080), ("c", 8081)] {
            let up = await eventually(timeout: .seconds(20), every: .milliseconds(200)) {
                (try? await self.hosts.run(host, ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/"]).status) == 0
            }
            try #require(up, "the app on \(host):\(port) did not start")
        }
        try await iptables("a", ["--apply", "--proxy-uid", "0"])
        try await iptables("b", ["--apply", "--proxy-uid", "0", "--inbound-ports", "8080"])
    }

    deinit {
        for sidecar in sidecars.values { sidecar.stop() }
        for app in apps { app.terminate() }
        hosts.remove()
        directory.remove()
    }

    func startApp(_ host: String, port: Int) throws {
        apps.append(try ChildProcess(hosts.exec(host, ["/usr/bin/python3", directory.url.appendingPathComponent("app.py").path, host, "\(port)"])))
    }

    func startSidecar(_ host: String, _ yaml: String) async throws {
        sidecars[host]?.stop()
        let sidecar = try SidecarProcess(
            configYAML: yaml, in: directory, name: host, extraArguments: ["--access-log", "off"],
            launcher: hosts.exec(host, []))
        sidecars[host] = sidecar
        let ready = await eventually(timeout: .seconds(20), every: .milliseconds(200)) {
            guard sidecar.process.isRunning else { return true }
            return (try? await self.hosts.run(host, ["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:15000/ready"]).status) == 0
        }
        try #require(ready && sidecar.process.isRunning, "sidecar \(host) did not start: \(sidecar.logs)")
    }

    /// A's sidecar: knows B (its instance at 10.77.0.2:15006) and a route that marks requests.
    func startSidecarA(unknown: String) async throws {
        try await startSidecar("a", """
            service: a
            inbound:  { listen: 0.0.0.0:15006, app: 127.0.0.1:8080 }
            outbound: { listen: 127.0.0.1:15001, transparent: true, unknown: \(unknown) }
            admin:    { listen: 127.0.0.1:15000 }
            tls:      { cert: certs/a.pem, key: certs/a.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: Instance, service: b, address: 10.77.0.2, port: 15006 }
              - kind: Route
                service: b
                rules: [ { match: { pathPrefix: / }, requestHeaders: { set: { x-routed: "yes" } } } ]
            """)
    }

    @discardableResult
    func iptables(_ host: String, _ arguments: [String]) async throws -> String {
        let result = try await hosts.run(host, [builtExecutable("sidecar"), "iptables"] + arguments)
        try #require(result.status == 0, "sidecar iptables \(arguments) on \(host): \(result.stderr)")
        return result.stdout
    }

    /// An unmodified client, as an ordinary user (the rules exempt only the sidecar's).
    func asUser(_ command: [String]) -> [String] {
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command
    }

    func curl(from host: String, _ url: String) async throws -> (status: Int32, body: String) {
        let result = try await hosts.run(host, asUser(["curl", "-sS", "--max-time", "10", url]))
        return (result.status, result.stdout)
    }

    func tcpEcho(from host: String, to address: String, port: Int) async throws -> String {
        let script = directory.url.appendingPathComponent("client.py").path
        let result = try await hosts.run(host, asUser(["/usr/bin/python3", script, address, "\(port)"]))
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func metrics(_ host: String) async throws -> String {
        try await hosts.run(host, ["curl", "-sS", "http://127.0.0.1:15000/metrics"]).stdout
    }

    @Test func interceptedTrafficCrossesTheMeshAndPlainTrafficFromElsewhereDoesNot() async throws {
        // A's curl to B's app address: redirected to A's sidecar, mTLS to B's, routed by A's Route.
        let answer = try await curl(from: "a", "http://10.77.0.2:8080/hello")
        #expect(answer.status == 0)
        #expect(answer.body == "app=b caller=a routed=yes\n")
        // A raw TCP client: an L4 tunnel (ALPN mesh-tcp) to B's app.
        #expect(try await tcpEcho(from: "a", to: "10.77.0.2", port: 8080) == "ping-over-the-mesh")

        let a = try await metrics("a")
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) == 1)
        #expect(metricValue(a, "sidecar_intercepted_connections_total", ["outcome": "mesh-tcp"]) == 1)
        #expect(metricValue(a, "sidecar_requests_total", ["direction": "outbound", "peer": "b", "code": "200"]) == 1)
        let b = try await metrics("b")
        #expect(metricValue(b, "sidecar_requests_total", ["direction": "inbound", "peer": "a", "code": "200"]) == 1)
        #expect((metricValue(b, "sidecar_bytes_total", ["direction": "inbound", "peer": "a", "flow": "request"]) ?? 0) > 0)

        // C is not in the mesh: its connection to B's app lands on B's inbound, which wants mTLS.
        let plain = try await curl(from: "c", "http://10.77.0.2:8080/hello")
        #expect(plain.status != 0 && !plain.body.contains("app=b"), "\(plain)")
        #expect(try await tcpEcho(from: "c", to: "10.77.0.2", port: 8080) == "")
        let refused = metricValue(try await metrics("b"), "sidecar_tls_handshake_errors_total", ["direction": "inbound", "reason": "not-tls"])
        #expect((refused ?? 0) >= 1, "B's inbound refused C's plain bytes")
    }

    @Test func anAddressOutsideTheMeshPassesThroughOrIsRefusedUnderRegistryOnly() async throws {
        #expect(try await curl(from: "a", "http://10.77.0.3:8081/").body == "app=c caller=- routed=-\n")
        #expect(metricValue(try await metrics("a"), "sidecar_intercepted_connections_total", ["outcome": "passthrough"]) == 1)

        try await startSidecarA(unknown: "registry-only")
        let refused = try await curl(from: "a", "http://10.77.0.3:8081/")
        #expect(refused.status != 0 && refused.body.isEmpty, "\(refused)")
        #expect(metricValue(try await metrics("a"), "sidecar_intercepted_connections_total", ["outcome": "refused"]) == 1)
        #expect(try await curl(from: "a", "http://10.77.0.2:8080/").body == "app=b caller=a routed=yes\n", "the mesh still works")
    }

    @Test func dryRunChangesNothingAndCleanupRestoresDirectTraffic() async throws {
        let before = try await hosts.run("a", ["nft", "list", "ruleset"]).stdout
        let printed = try await iptables("a", ["--dry-run", "--proxy-uid", "0", "--exclude-outbound-ports", "22"])
        #expect(printed.contains("table ip mesh_intercept {") && printed.contains("tcp dport 22 return"))
        #expect(try await hosts.run("a", ["nft", "list", "ruleset"]).stdout == before, "--dry-run changed the rules")
        #expect(!before.contains("dport 22"))

        try await iptables("a", ["--apply", "--proxy-uid", "0"])  // again: the same rules, once
        #expect(try await hosts.run("a", ["nft", "list", "ruleset"]).stdout == before, "--apply twice is --apply once")

        for host in ["a", "b"] {
            try await iptables(host, ["--cleanup"])
            #expect(try await hosts.run(host, ["nft", "list", "ruleset"]).stdout.isEmpty, "rules left on \(host)")
            try await iptables(host, ["--cleanup"])  // nothing to remove: still fine
        }
        // Direct again: A's and C's requests reach B's app without the mesh.
        #expect(try await curl(from: "a", "http://10.77.0.2:8080/").body == "app=b caller=- routed=-\n")
        #expect(try await curl(from: "c", "http://10.77.0.2:8080/").body == "app=b caller=- routed=-\n")
        #expect(metricValue(try await metrics("a"), "sidecar_intercepted_connections_total", ["outcome": "mesh-http"]) == 0)
    }
}
