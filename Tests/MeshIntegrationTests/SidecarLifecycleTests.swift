import Foundation
import MeshTestSupport
import NIOCore
import NIOPosix
import SidecarCore
import Testing

/// The sidecar as an operator runs it: validate, drain on SIGTERM, slow clients, upgrades.
@Suite(.serialized) final class SidecarLifecycleTests {
    let directory = TemporaryDirectory()
    let pki = TestPKI()

    init() throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "web").write(to: certs, name: "web")
        try pki.issue(service: "payments").write(to: certs, name: "payments")
    }

    deinit { directory.remove() }

    /// Starts web → payments sidecars in front of `appPort`; returns web's outbound port.
    func startPair(appPort: Int, webArguments: [String] = []) async throws -> (
        web: SidecarProcess, payments: SidecarProcess, outbound: Int, webAdmin: Int
    ) {
        let webOut = try freeLoopbackPort(), webIn = try freeLoopbackPort(), payIn = try freeLoopbackPort()
        let payOut = try freeLoopbackPort(), webAdmin = try freeLoopbackPort(), payAdmin = try freeLoopbackPort()
        let web = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(webIn), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(webOut) }
            admin:    { listen: 127.0.0.1:\(webAdmin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: Instance, service: payments, address: 127.0.0.1, port: \(payIn) }
            """, in: directory, name: "web-\(webOut)", extraArguments: webArguments)
        let payments = try SidecarProcess(configYAML: """
            service: payments
            inbound:  { listen: 127.0.0.1:\(payIn), app: 127.0.0.1:\(appPort) }
            outbound: { listen: 127.0.0.1:\(payOut) }
            admin:    { listen: 127.0.0.1:\(payAdmin) }
            tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
            """, in: directory, name: "payments-\(payIn)")
        #expect(await web.waitUntilListening(ports: [webOut, webIn]), "\(web.logs)")
        #expect(await payments.waitUntilListening(ports: [payIn]), "\(payments.logs)")
        return (web, payments, webOut, webAdmin)
    }

    /// A port held by another program: the sidecar exits 1 at once with the address and the
    /// config key in one line, for each of its listeners.
    @Test(arguments: ["outbound.listen", "inbound.listen", "admin.listen", "outbound.tcp[0].listen"])
    func aTakenPortIsNamedWithItsConfigKey(key: String) async throws {
        let taken = try TakenPort()
        defer { taken.release() }
        var ports: [String: Int] = [:]
        for name in ["outbound.listen", "inbound.listen", "admin.listen", "outbound.tcp[0].listen"] {
            ports[name] = name == key ? taken.port : try freeLoopbackPort()
        }
        let sidecar = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(ports["inbound.listen"]!), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(ports["outbound.listen"]!), tcp: [ { listen: 127.0.0.1:\(ports["outbound.tcp[0].listen"]!), service: db } ] }
            admin:    { listen: 127.0.0.1:\(ports["admin.listen"]!) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            """, in: directory, name: "taken-\(taken.port)")
        defer { sidecar.stop() }
        let status = await sidecar.process.wait(timeout: .seconds(20))
        #expect(!sidecar.process.isRunning)
        #expect(status == 1, "\(sidecar.logs)")
        #expect(sidecar.logs.contains("sidecar: cannot listen on 127.0.0.1:\(taken.port) (\(key)): address already in use\n"),
                "\(sidecar.logs)")
    }

    @Test func validateReportsErrorsWithKeyPathAndLine() async throws {
        let path = directory.url.appendingPathComponent("bad.yaml").path
        try """
            service: web
            outbound: { listen: 127.0.0.1:15001 }
            tls: { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:
              - kind: Instance
                service: payments
                address: 127.0.0.1
                port: 16006
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /pay }
                    timeout: 2x
                    colour: blue
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await ChildProcess.run([builtExecutable("sidecar"), "validate", "--config", path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("bad.yaml:13: resources[1].rules[0].timeout: \"2x\" is not a duration"), "\(result.stderr)")
        #expect(result.stderr.contains("resources[1].rules[0].colour"), "\(result.stderr)")
        #expect(result.stderr.contains("inbound"), "a missing inbound app is reported: \(result.stderr)")

        let good = directory.url.appendingPathComponent("good.yaml").path
        try """
            service: web
            inbound: { app: 127.0.0.1:8080 }
            tls: { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            """.write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try await ChildProcess.run([builtExecutable("sidecar"), "validate", "--config", good])
        #expect(ok.status == 0, "\(ok.stderr)")

        let wrongIdentity = directory.url.appendingPathComponent("wrong.yaml").path
        try """
            service: orders
            inbound: { app: 127.0.0.1:8080 }
            tls: { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            """.write(toFile: wrongIdentity, atomically: true, encoding: .utf8)
        let refused = try await ChildProcess.run([builtExecutable("sidecar"), "validate", "--config", wrongIdentity])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("spiffe://mesh.local/service/web"), "\(refused.stderr)")

        let version = try await ChildProcess.run([builtExecutable("sidecar"), "--version"])
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == MeshVersion.current)
    }

    @Test func sigtermDrainsFiftyInFlightSlowRequests() async throws {
        let app = try await TestHTTPApp(name: "payments")
        let (web, payments, outbound, webAdmin) = try await startPair(appPort: app.port)
        defer { web.stop(); payments.stop() }
        #expect(await eventually { (try? await curl(["http://127.0.0.1:\(webAdmin)/ready"]))?.status == 200 })
        let before = app.requests
        let clients = try (0..<50).map { index in
            try ChildProcess(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                              "-x", "http://127.0.0.1:\(outbound)", "http://payments/slow?n=\(index)&ms=1500"])
        }
        // Every request has reached the app (which answers 1.5 s later) before the signal.
        #expect(await eventually { app.requests - before == 50 })
        web.signal(SIGTERM)
        // While the 50 finish, the sidecar says it is draining.
        #expect(await eventually { (try? await curl(["http://127.0.0.1:\(webAdmin)/ready"]))?.status == 503 })
        var codes: [String] = []
        for client in clients {
            _ = await client.wait(timeout: .seconds(30))
            codes.append(client.stdout)
            client.terminate()
        }
        #expect(codes.filter { $0 == "200" }.count == 50, "\(codes)")
        let exit = await web.process.wait(timeout: .seconds(30))
        #expect(exit == 0, "\(web.logs)")
        #expect(!canConnect(port: outbound))
        // Access log lines are written in batches; none is lost at exit, however late it came.
        let logged = web.accessLog.split(separator: "\n").filter { $0.contains("\"path\":\"/slow") && $0.contains("\"status\":200") }
        #expect(logged.count == 50, "\(web.accessLog.suffix(600))")
    }

    @Test func slowlorisGets408AndOthersAreServed() async throws {
        let app = try await TestHTTPApp(name: "payments")
        let (web, payments, outbound, _) = try await startPair(appPort: app.port, webArguments: ["--request-head-timeout", "500ms"])
        defer { web.stop(); payments.stop() }
        let slow = try await ChildProcess.run([
            "bash", "-c",
            "exec 3<>/dev/tcp/127.0.0.1/\(outbound); printf 'GET /pay HTTP/1.1\\r\\nHost: pay' >&3; timeout 10 cat <&3",
        ])
        #expect(slow.stdout.hasPrefix("HTTP/1.1 408"), "\(slow.stdout)")
        let fine = try await curl(["-x", "http://127.0.0.1:\(outbound)", "http://payments/pay"])
        #expect(fine.status == 200)
    }

    @Test func upgradedConnectionsAreTunnelled() async throws {
        let app = try await UpgradeEchoApp()
        let (web, payments, outbound, _) = try await startPair(appPort: app.port)
        defer { web.stop(); payments.stop() }
        let script = """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", \(outbound)))
            s.sendall(b"GET /chat HTTP/1.1\\r\\nHost: payments\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                chunk = s.recv(4096)
                if not chunk: break
                data += chunk
            head, _, rest = data.partition(b"\\r\\n\\r\\n")
            frame = bytes([0x81, 0x85, 1, 2, 3, 4]) + bytes(b ^ [1, 2, 3, 4][i % 4] for i, b in enumerate(b"hello"))
            s.sendall(frame)
            while len(rest) < len(frame):
                chunk = s.recv(4096)
                if not chunk: break
                rest += chunk
            print(head.decode().split("\\r\\n")[0])
            print([l for l in head.decode().split("\\r\\n") if l.startswith("x-seen-caller")][0])
            print("echoed" if rest == frame else "mismatch %r" % rest)
            """
        let result = try await ChildProcess.run(["python3", "-c", script])
        #expect(result.stdout.contains("HTTP/1.1 101"), "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("x-seen-caller: web"))
        #expect(result.stdout.contains("echoed"))
    }

    @Test func tcpThroughOutboundTCPPortIsCarriedOverMTLS() async throws {
        try pki.issue(service: "db").write(to: directory.url.appendingPathComponent("certs"), name: "db")
        let echo = try await TCPEchoApp()
        let webTCP = try freeLoopbackPort(), webOut = try freeLoopbackPort(), webIn = try freeLoopbackPort()
        let dbIn = try freeLoopbackPort(), dbOut = try freeLoopbackPort()
        let webAdmin = try freeLoopbackPort(), dbAdmin = try freeLoopbackPort()
        let web = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(webIn), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(webOut), tcp: [ { listen: 127.0.0.1:\(webTCP), service: db } ] }
            admin:    { listen: 127.0.0.1:\(webAdmin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: Instance, service: db, address: 127.0.0.1, port: \(dbIn) }
            """, in: directory, name: "web-tcp")
        let db = try SidecarProcess(configYAML: """
            service: db
            inbound:  { listen: 127.0.0.1:\(dbIn), app: 127.0.0.1:\(echo.port), protocol: tcp }
            outbound: { listen: 127.0.0.1:\(dbOut) }
            admin:    { listen: 127.0.0.1:\(dbAdmin) }
            tls:      { cert: certs/db.pem, key: certs/db.key, trustBundle: certs/ca.pem }
            resources:
              - kind: AuthorizationPolicy
                service: db
                default: deny
                allow: [ { from: [ web ] } ]
            """, in: directory, name: "db")
        defer { web.stop(); db.stop() }
        #expect(await web.waitUntilListening(ports: [webTCP, webOut]), "\(web.logs)")
        #expect(await db.waitUntilListening(ports: [dbIn]), "\(db.logs)")
        let script = """
            import socket
            s = socket.create_connection(("127.0.0.1", \(webTCP)))
            payload = bytes(range(256)) * 4096
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                if not chunk: break
                got += chunk
            print("echoed %d" % len(got) if got == payload else "mismatch %d" % len(got))
            """
        let result = try await ChildProcess.run(["python3", "-c", script])
        #expect(result.stdout.contains("echoed 1048576"), "\(result.stdout) \(result.stderr) \(web.logs) \(db.logs)")
        // The tunnel's log line is written when it closes.
        #expect(await eventually { db.accessLog.contains("\"peer\":\"web\"") }, "\(db.accessLog)")
    }
}
