import Foundation
import MeshTestSupport
import Testing

/// Requests an attacker sends, against real sidecars and a raw app that records what arrived:
/// dot-segment encodings must not escape an allowed path prefix, forged identity headers and
/// trailers must not reach the app, an absolute-form target's authority wins over `Host`, a
/// trickled body times out, and an oversized head gets 431 at once (security issue, DESIGN.md
/// "Identity and trust").
@Suite(.serialized) struct HostileRequestTests {
    /// web → payments; payments lets web GET and POST under `/pay/` only.
    final class Mesh {
        let directory = TemporaryDirectory()
        let pki = TestPKI()
        let app: RawHTTPApp
        let payments: SidecarProcess
        let web: SidecarProcess
        let paymentsInbound: Int
        let webOut: Int
        let webFiles: (cert: String, key: String, ca: String)

        init() async throws {
            app = try await RawHTTPApp()
            let certs = directory.url.appendingPathComponent("certs")
            try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
            webFiles = try pki.issue(service: "web").write(to: certs, name: "web")
            _ = try pki.issue(service: "payments").write(to: certs, name: "payments")
            paymentsInbound = try freeLoopbackPort()
            payments = try SidecarProcess(configYAML: """
                service: payments
                inbound:  { listen: 127.0.0.1:\(paymentsInbound), app: 127.0.0.1:\(app.port) }
                outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                admin:    { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
                resources:
                  - kind: AuthorizationPolicy
                    service: payments
                    default: deny
                    allow: [ { from: [web], methods: [GET, POST], pathPrefix: /pay/ } ]
                """, in: directory, name: "payments", extraArguments: ["--request-body-timeout", "1s"])
            webOut = try freeLoopbackPort()
            web = try SidecarProcess(configYAML: """
                service: web
                inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
                outbound: { listen: 127.0.0.1:\(webOut) }
                admin:    { listen: 127.0.0.1:\(try freeLoopbackPort()) }
                tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
                resources:
                  - { kind: Instance, service: payments, address: 127.0.0.1, port: \(paymentsInbound) }
                """, in: directory, name: "web", extraArguments: ["--access-log", "off"])
            #expect(await payments.waitUntilListening(ports: [paymentsInbound]), "\(payments.logs)")
            #expect(await web.waitUntilListening(ports: [webOut]), "\(web.logs)")
        }

        deinit {
            payments.stop()
            web.stop()
            directory.remove()
        }

        /// One request through web's outbound, the path sent exactly as written.
        func get(_ path: String, headers: [String] = []) async throws -> CurlResult {
            try await curl(["--path-as-is", "-H", "Host: payments"] + headers.flatMap { ["-H", $0] }
                + ["http://127.0.0.1:\(webOut)\(path)"])
        }

        /// A TLS client with web's certificate straight to payments' inbound: raw bytes in,
        /// whatever the inbound answers out.
        func rawClient() throws -> ChildProcess {
            try ChildProcess([
                "openssl", "s_client", "-connect", "127.0.0.1:\(paymentsInbound)", "-tls1_3", "-quiet", "-no_ign_eof",
                "-servername", "payments", "-cert", webFiles.cert, "-key", webFiles.key, "-CAfile", webFiles.ca,
            ])
        }
    }

    @Test func dotSegmentEncodingsCannotEscapeTheAllowedPrefix() async throws {
        let mesh = try await Mesh()
        for path in [
            "/pay/../admin/secret.txt", "/pay/%2e%2e/admin/secret.txt", "/pay/%2E%2e/admin/secret.txt",
            "/pay/.%2e/admin/secret.txt", "/pay/./../admin/secret.txt", "/payroll", "//admin/secret.txt",
        ] {
            let answer = try await mesh.get(path)
            #expect(answer.status == 403, "\(path): \(answer.status) \(answer.body)")
            #expect(answer.headers["x-mesh-error"] == "forbidden")
        }
        for path in [
            "/pay/..%2fadmin/secret.txt", "/pay/..%2Fadmin/secret.txt", "/pay/..%5cadmin/secret.txt",
            "/pay/..\\admin/secret.txt", "/pay/%c0%ae%c0%ae/admin/secret.txt", "/pay/..;/admin/secret.txt",
            "/pay/%00/x",
        ] {
            let answer = try await mesh.get(path)
            #expect(answer.status == 400, "\(path): \(answer.status) \(answer.body)")
            #expect(answer.headers["x-mesh-error"] == "bad-request")
        }
        #expect(mesh.app.requests.isEmpty, "the app saw: \(mesh.app.requests)")

        // Allowed requests reach the app with the normalized path.
        let allowed: [(sent: String, forwarded: String)] = [
            ("/pay/./x", "/pay/x"), ("/pay//x", "/pay/x"), ("/pay/a/../b", "/pay/b"), ("/p%61y/%7Ex", "/pay/~x"),
            ("/pay/%252e%252e/admin", "/pay/%252e%252e/admin"), ("/pay/x;v=1?q=../y", "/pay/x;v=1?q=../y"),
        ]
        for (sent, _) in allowed {
            let answer = try await mesh.get(sent)
            #expect(answer.status == 200, "\(sent): \(answer.status) \(answer.body)")
        }
        let startLines = mesh.app.requests.map { $0.components(separatedBy: "\r\n")[0] }
        #expect(startLines == allowed.map { "GET \($0.forwarded) HTTP/1.1" })
    }

    @Test func forgedIdentityHeadersAndAbsoluteFormHostsDoNotReachTheApp() async throws {
        let mesh = try await Mesh()
        let spoofed = try await mesh.get(
            "/pay/who", headers: ["x_mesh_caller: admin", "X-Mesh-Caller: admin", "x-mesh_user: root"])
        #expect(spoofed.status == 200)
        // Absolute-form through the proxy port with another Host: the target's authority wins.
        let absolute = try await curl([
            "-x", "http://127.0.0.1:\(mesh.webOut)", "-H", "Host: evil.example", "http://payments/pay/abs",
        ])
        #expect(absolute.status == 200, "\(absolute.body)")
        let requests = mesh.app.requests
        #expect(requests.count == 2)
        let first = requests.first?.lowercased() ?? ""
        #expect(!first.contains("admin") && !first.contains("root"), "\(first)")
        #expect(first.contains("x-mesh-caller: web\r\n"))
        let second = requests.last?.lowercased() ?? ""
        #expect(second.contains("\r\nhost: payments\r\n") && !second.contains("evil.example"), "\(second)")
    }

    @Test func forgedIdentityTrailersAreRemovedAtTheInbound() async throws {
        let mesh = try await Mesh()
        let client = try mesh.rawClient()
        defer { client.terminate() }
        client.write(
            "POST /pay/upload HTTP/1.1\r\nHost: payments\r\nx_mesh_caller: admin\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5\r\nhello\r\n0\r\nX-Mesh-Caller: admin\r\nx_mesh_user: root\r\nChecksum: 1\r\n\r\n")
        #expect(await eventually { client.stdout.contains("HTTP/1.1 200") }, "\(client.stdout) \(client.stderr)")
        let received = try #require(mesh.app.requests.first)
        #expect(received.hasPrefix("POST /pay/upload HTTP/1.1\r\n"))
        #expect(received.lowercased().contains("x-mesh-caller: web\r\n"))
        #expect(!received.contains("admin") && !received.contains("root"), "\(received)")
        #expect(received.hasSuffix("5\r\nhello\r\n0\r\nChecksum: 1\r\n\r\n"), "\(received)")
    }

    @Test func aTrickledBodyTimesOutWith408AndNeverReachesTheAppWhole() async throws {
        let mesh = try await Mesh()
        let client = try mesh.rawClient()
        defer { client.terminate() }
        let started = ContinuousClock.now
        client.write("POST /pay/slow HTTP/1.1\r\nHost: payments\r\nContent-Length: 100\r\n\r\n0123456789")
        #expect(await eventually(timeout: .seconds(15)) { client.stdout.contains("HTTP/1.1 408") }, "\(client.stdout)")
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(client.stdout.contains("x-mesh-error: bad-request"))
        #expect(mesh.app.requests.isEmpty)
    }

    @Test func anOversizedHeadIs431AtOnce() async throws {
        let mesh = try await Mesh()
        for size in [70 * 1024, 100 * 1024, 64 * 1024 - 40] {
            let client = try mesh.rawClient()
            defer { client.terminate() }
            let started = ContinuousClock.now
            client.write("GET /pay/x HTTP/1.1\r\nHost: payments\r\nx-big: " + String(repeating: "a", count: size))
            #expect(await eventually(timeout: .seconds(8)) { client.stdout.contains("HTTP/1.1 431") }, "\(size): \(client.stdout)")
            #expect(ContinuousClock.now - started < .seconds(5), "\(size) bytes")
        }
    }
}
