import Foundation
import MeshTestSupport
import Testing

/// HTTP/2 with real clients (curl, nghttp, h2load) through the sidecar pair: h2c on web's
/// outbound, `h2` over mTLS between the sidecars, translated to HTTP/1.1 for an app that
/// speaks only that (`inbound.protocol: http`).
@Suite(.serialized) final class HTTP2Tests {
    let app: TestHTTPApp
    let mesh: PaymentsMesh

    init() async throws {
        app = try await TestHTTPApp(name: "a")
        // The route timeout (default 15 s) bounds a whole exchange, the slow download included.
        mesh = try await PaymentsMesh(backends: [(app, "version: v1")], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: / }
                    timeout: 120s
            """)
    }

    /// curl with prior knowledge through web's outbound: `args` then the URL path on payments.
    func curlH2(_ path: String, _ args: [String] = []) async throws -> CurlResult {
        try await curl(["--http2-prior-knowledge", "-H", "Host: payments"] + args + ["http://127.0.0.1:\(mesh.webOut)\(path)"])
    }

    @Test func curlWithPriorKnowledgeGoesHTTP2EndToEndToAnHTTP1App() async throws {
        let reply = try await curlH2("/get", ["-H", "x-mesh-caller: forged", "-H", "x_mesh_caller: forged"])
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.body.contains("app=a method=GET path=/get caller=web "), "\(reply.body)")
        let posted = try await curlH2("/post", ["--data-binary", String(repeating: "x", count: 100_000)])
        #expect(posted.body.contains("method=POST") && posted.body.contains("body-bytes=100000"), "\(posted.body)")
        let line = try #require(await eventually { self.mesh.web.accessLog.contains("\"path\":\"/post\"") } ? mesh.web.accessLog
            .split(separator: "\n").first { $0.contains("\"path\":\"/post\"") } : nil)
        #expect(line.contains("\"protocol\":\"HTTP/2\""), "\(line)")
        #expect(line.contains("\"bytes_in\":100000"), "\(line)")
    }

    @Test func nghttpWithAClientCertificateReachesTheAppThroughTheInbound() async throws {
        let certs = mesh.directory.url.appendingPathComponent("certs").path
        let result = try await ChildProcess.run([
            "nghttp", "--cert", "\(certs)/web.pem", "--key", "\(certs)/web.key",
            "https://127.0.0.1:\(mesh.paymentsInbounds[0])/from-nghttp",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("path=/from-nghttp caller=web "), "\(result.stdout) \(result.stderr)")
        // Without a certificate the handshake is refused: nothing reaches the app.
        let before = app.requests
        let refused = try await ChildProcess.run(["nghttp", "https://127.0.0.1:\(mesh.paymentsInbounds[0])/no-cert"])
        #expect(!refused.stdout.contains("path=/no-cert"), "\(refused.stdout)")
        #expect(app.requests == before)
    }

    /// Malformed requests (RFC 9113 §8.2.2: a connection-specific field, `te` other than
    /// `trailers`) from nghttp are reset with PROTOCOL_ERROR on web's outbound and on payments'
    /// inbound, and never reach the app: the sidecar checks header blocks itself, not NIOHTTP2.
    @Test func malformedRequestsAreResetWithProtocolErrorOnBothSidecars() async throws {
        let certs = mesh.directory.url.appendingPathComponent("certs").path
        let targets = [
            (["-H", ":authority: payments"], "http://127.0.0.1:\(mesh.webOut)"),
            (["--cert", "\(certs)/web.pem", "--key", "\(certs)/web.key"], "https://127.0.0.1:\(mesh.paymentsInbounds[0])"),
        ]
        let before = app.requests
        for (args, base) in targets {
            for header in ["connection: close", "te: gzip"] {
                let result = try await ChildProcess.run(["nghttp", "-nv"] + args + ["-H", header, "\(base)/malformed"])
                #expect(result.stdout.contains("recv RST_STREAM") && result.stdout.contains("PROTOCOL_ERROR"), "\(base) \(header): \(result.stdout)")
            }
        }
        #expect(app.requests == before, "no malformed request reached the app")
        let reply = try await curlH2("/after-malformed")
        #expect(reply.status == 200, "the connection-level state is fine: \(reply.body)")
    }

    /// 1 GiB read at 64 MB/s (the app and the sidecars could send it several times faster):
    /// unbounded buffering would hold hundreds of MiB; flow control holds a few windows.
    @Test func aSlowReaderOfAGibibyteDownloadKeepsBothSidecarsFlat() async throws {
        func rssKiB(_ sidecar: SidecarProcess) -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(sidecar.process.process.processIdentifier)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        let payments = mesh.sidecars[0]
        _ = try await curlH2("/warm")
        let before = (rssKiB(mesh.web), rssKiB(payments))
        let download = try ChildProcess(
            ["curl", "-sS", "--http2-prior-knowledge", "-H", "Host: payments", "--limit-rate", "64M", "-o", "/dev/null",
             "-w", "%{http_code} %{size_download}", "http://127.0.0.1:\(mesh.webOut)/bytes?n=\(1 << 30)"])
        var peak = before
        while download.isRunning {
            peak = (max(peak.0, rssKiB(mesh.web)), max(peak.1, rssKiB(payments)))
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(download.stdout == "200 \(1 << 30)", "\(download.stdout) \(download.stderr)")
        // Flow control holds the app back: neither sidecar holds more than a few windows.
        #expect(peak.0 - before.0 < 48 * 1024, "web grew from \(before.0) to \(peak.0) KiB")
        #expect(peak.1 - before.1 < 48 * 1024, "payments grew from \(before.1) to \(peak.1) KiB")
    }

    @Test func sigtermSendsGoawayAndTheStreamInFlightCompletes() async throws {
        let slow = try ChildProcess(
            ["curl", "-sS", "--http2-prior-knowledge", "-H", "Host: payments", "-w", "\n%{http_code}",
             "http://127.0.0.1:\(mesh.webOut)/slow?ms=1500"])
        #expect(await eventually { self.app.requests > 0 }, "the request reached the app")
        mesh.web.signal(SIGTERM)
        _ = await slow.wait(timeout: .seconds(20))
        #expect(slow.stdout.hasSuffix("\n200"), "\(slow.stdout) \(slow.stderr)")
        #expect(slow.stdout.contains("path=/slow?ms=1500"))
    }
}
