import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// Retries, safe by default: an upstream that fails every third request, behind web → payments.
/// Bodies up to 64 KiB are replayed in full; larger ones are sent once. web's access log
/// (its stdout) names every retry and why retrying stopped.
@Suite(.serialized) final class RetryTests {
    let app: TestHTTPApp
    let mesh: PaymentsMesh
    var webOut: Int { mesh.webOut }
    var webAdmin: Int { mesh.webAdmin }
    var web: SidecarProcess { mesh.web }
    var directory: TemporaryDirectory { mesh.directory }

    init() async throws {
        app = try await TestHTTPApp(name: "flaky", failEvery: 3)
        mesh = try await PaymentsMesh(backends: [(app, "version: v1")], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: / }
                    retries: { attempts: 3, retryOn: [connect-failure, reset, 503], backoff: { base: 5ms, max: 20ms } }
            """)
    }

    @Test func retriesTurnOneInThreeFailuresIntoFullSuccess() async throws {
        let urls = (0..<60).flatMap { ["-o", "/dev/null", "http://payments/get/\($0)"] }
        let result = try await ChildProcess.run(
            ["curl", "-sS", "-w", "%{http_code}\n", "-x", "http://127.0.0.1:\(webOut)"] + urls)
        #expect(result.stdout.split(separator: "\n").filter { $0 == "200" }.count == 60, "\(result.stdout)")
        // 89 tries: 29 of them (every third) failed with 503 and were tried again.
        #expect(app.requests == 89)
        let metrics = try await curl(["http://127.0.0.1:\(webAdmin)/metrics"]).body
        #expect(metricValue(metrics, "sidecar_retries_total", ["peer": "payments", "reason": "503"]) == 29)
    }

    @Test func aPostIsSentExactlyOnceAndFailsVisibly() async throws {
        _ = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/warm-1"])
        _ = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/warm-2"])
        #expect(app.requests == 2)
        let post = try await curl(["-x", "http://127.0.0.1:\(webOut)", "-X", "POST", "http://payments/pay"])
        #expect(post.status == 503)
        #expect(app.requests == 3, "not retried: POST is not idempotent")
    }

    @Test func aPostWithIdempotencyKeyIsRetried() async throws {
        _ = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/warm-1"])
        _ = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/warm-2"])
        let post = try await curl(["-x", "http://127.0.0.1:\(webOut)", "-X", "POST", "-H", "Idempotency-Key: 42",
                                   "http://payments/pay"])
        #expect(post.status == 200)
        #expect(app.requests == 4)
    }
}

extension RetryTests {
    /// A body of `count` bytes that is not all zeros, written to a file for `curl --data-binary @file`.
    func bodyFile(_ count: Int) throws -> (path: String, checksum: UInt32) {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let path = directory.url.appendingPathComponent("body-\(count)").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, bytes.reduce(UInt32(0)) { $0 &* 31 &+ UInt32($1) })
    }

    /// web's access log lines for requests whose path contains `path`.
    func accessLogLines(_ path: String) -> [Substring] {
        web.accessLog.split(separator: "\n").filter { $0.contains("\"path\":\"\(path)") }
    }

    @Test func postBodiesWithIdempotencyKeyAreReplayedInFullOnEveryTry() async throws {
        let body = try bodyFile(10 * 1024)
        let urls = (0..<30).map { "http://payments/pay/\($0)" }
        var answers: [Substring] = []
        // Content-Length bodies, then chunked ones.
        for framing in [["-H", "Expect:"], ["-H", "Expect:", "-H", "Transfer-Encoding: chunked"]] {
            let result = try await ChildProcess.run(
                ["curl", "-sS", "-w", "\nstatus=%{http_code}\n", "-x", "http://127.0.0.1:\(webOut)", "-X", "POST",
                 "-H", "Idempotency-Key: order-1", "--data-binary", "@\(body.path)"] + framing + urls,
                timeout: .seconds(120))
            answers += result.stdout.split(separator: "\n").filter { $0.hasPrefix("app=") || $0.hasPrefix("status=") }
        }
        #expect(answers.filter { $0 == "status=200" }.count == 60, "\(answers)")
        let appLines = answers.filter { $0.hasPrefix("app=") }
        #expect(appLines.count == 60)
        #expect(appLines.allSatisfy { $0.contains("body-bytes=10240 checksum=\(body.checksum)") }, "\(appLines)")
        // Every try (failed ones too) carried the whole body: 60 requests, 29 of them tried twice.
        #expect(app.requests == 89)
        #expect(app.bodyBytes == 89 * 10 * 1024)
        let metrics = try await curl(["http://127.0.0.1:\(webAdmin)/metrics"]).body
        #expect(metricValue(metrics, "sidecar_retries_total", ["peer": "payments", "reason": "503"]) == 29)
        // The access log names each retry and its reason.
        #expect(await eventually(timeout: .seconds(10)) { self.accessLogLines("/pay/").count == 60 })
        let retried = accessLogLines("/pay/").filter { $0.contains("\"tries\":2,\"retry_reasons\":[\"503\"]") }
        #expect(retried.count == 29, "\(web.accessLog)")
    }

    @Test func aPutOver64KiBIsSentExactlyOnceAndTheLogSaysWhy() async throws {
        let body = try bodyFile(100 * 1024)
        _ = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/warm-1"])
        _ = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://payments/warm-2"])
        let put = try await curl(["-x", "http://127.0.0.1:\(webOut)", "-X", "PUT", "-H", "Expect:",
                                  "--data-binary", "@\(body.path)", "http://payments/big"])
        #expect(put.status == 503, "the third request fails upstream and cannot be replayed")
        #expect(app.requests == 3, "sent exactly once")
        #expect(app.bodyBytes == 100 * 1024)
        #expect(await eventually(timeout: .seconds(10)) { !self.accessLogLines("/big").isEmpty })
        let line = accessLogLines("/big").first ?? ""
        #expect(line.contains("\"status\":503"), "\(line)")
        #expect(line.contains("\"retry_stopped\":\"body-too-large\""), "\(line)")
        let metrics = try await curl(["http://127.0.0.1:\(webAdmin)/metrics"]).body
        // Not retried, so the 503 series may not exist: absent or zero.
        #expect(metricValueOrZero(metrics, "sidecar_retries_total", ["peer": "payments", "reason": "503"]) == 0)
    }

    @Test func rejectionsAreLoggedWithTheirCause() async throws {
        let unknown = try await curl(["-x", "http://127.0.0.1:\(webOut)", "http://nowhere/x"])
        #expect(unknown.status == 404)
        #expect(await eventually(timeout: .seconds(10)) {
            self.web.accessLog.contains("\"authority\":\"nowhere\"")
        })
        let line = web.accessLog.split(separator: "\n").first { $0.contains("\"authority\":\"nowhere\"") } ?? ""
        #expect(line.contains("\"status\":404") && line.contains("\"mesh_error\":\"no-route\""), "\(line)")
    }
}
