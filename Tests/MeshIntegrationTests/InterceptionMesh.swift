import Foundation
import MeshTestSupport
import Testing

/// The hosts of the interception tests: network namespaces on one bridge (`a` 10.77.0.1 and
/// fd77::1, `b` 10.77.0.2 and fd77::2, `c` 10.77.0.3 and fd77::3, …), each with certificates for its service, an app, a sidecar
/// run as root inside it, and clients run as nobody. `stop()` ends every process and deletes
/// the namespaces, whatever the test did.
final class InterceptionMesh: @unchecked Sendable {
    let hosts = NetworkNamespaces()
    let directory = TemporaryDirectory()
    let pki = TestPKI()
    private(set) var sidecars: [String: SidecarProcess] = [:]
    private var processes: [ChildProcess] = []

    /// An app that answers HTTP with who it is and what the mesh told it (`x-mesh-caller`, the
    /// route's `x-routed`), and echoes any other bytes line by line; on IPv4 and IPv6.
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
        server = socket.create_server(('::', int(sys.argv[2])), family=socket.AF_INET6, dualstack_ipv6=True)
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

    /// Hosts named `hosts`, the n-th at 10.77.0.n and fd77::n, each with a certificate for the service of
    /// its name in `certs/`.
    init(hosts names: [String]) async throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        for (index, name) in names.enumerated() {
            try await hosts.addHost(name, address: "10.77.0.\(index + 1)/24", ipv6: "fd77::\(index + 1)/64")
            try pki.issue(service: name).write(to: certs, name: name)
        }
        try Self.app.write(to: directory.url.appendingPathComponent("app.py"), atomically: true, encoding: .utf8)
        try Self.tcpClient.write(to: directory.url.appendingPathComponent("client.py"), atomically: true, encoding: .utf8)
    }

    func stop() {
        for sidecar in sidecars.values { sidecar.stop() }
        for process in processes { process.terminate() }
        hosts.remove()
        directory.remove()
    }

    /// Starts `command` in `host` for the rest of the test.
    func start(_ host: String, _ command: [String]) throws -> ChildProcess {
        let process = try ChildProcess(hosts.exec(host, command))
        processes.append(process)
        return process
    }

    /// The app on [::]:`port` of `host` (IPv4 too), once it answers.
    func startApp(_ host: String, port: Int) async throws {
        _ = try start(host, ["/usr/bin/python3", directory.url.appendingPathComponent("app.py").path, host, "\(port)"])
        let up = await eventually(timeout: .seconds(20), every: .milliseconds(200)) {
            (try? await self.hosts.run(host, ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/"]).status) == 0
        }
        try #require(up, "the app on \(host):\(port) did not start")
    }

    /// The sidecar of `host` (replacing a running one) on `yaml`, once its `/ready` says 200
    /// (admin on 127.0.0.1:15000 in every host).
    func startSidecar(_ host: String, _ yaml: String, timeout: Duration = .seconds(20)) async throws {
        sidecars[host]?.stop()
        let sidecar = try SidecarProcess(
            configYAML: yaml, in: directory, name: host, extraArguments: ["--access-log", "off"],
            launcher: hosts.exec(host, []))
        sidecars[host] = sidecar
        let ready = await eventually(timeout: timeout, every: .milliseconds(200)) {
            guard sidecar.process.isRunning else { return true }
            return (try? await self.hosts.run(host, ["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:15000/ready"]).status) == 0
        }
        try #require(ready && sidecar.process.isRunning, "sidecar \(host) did not start: \(sidecar.logs)")
    }

    /// `sidecar iptables` in `host`; `path` replaces PATH (to hide nft from it).
    @discardableResult
    func iptables(_ host: String, _ arguments: [String], path: String? = nil) async throws -> String {
        let environment = path.map { ["/usr/bin/env", "PATH=\($0)"] } ?? []
        let result = try await hosts.run(host, environment + [builtExecutable("sidecar"), "iptables"] + arguments)
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
}
