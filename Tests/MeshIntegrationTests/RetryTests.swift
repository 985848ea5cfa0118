import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// Retries, safe by default: an upstream that fails every third request, behind web → payments.
@Suite(.serialized) final class RetryTests {
    let directory = TemporaryDirectory()
    let pki = TestPKI()
    var sidecars: [SidecarProcess] = []
    var app: TestHTTPApp!
    var webOut = 0
    var webAdmin = 0

    init() async throws {
        let certs = directory.url.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        try pki.issue(service: "web").write(to: certs, name: "web")
        try pki.issue(service: "payments").write(to: certs, name: "payments")
        app = try await TestHTTPApp(name: "flaky", failEvery: 3)
        let payIn = try freeLoopbackPort()
        let payments = try SidecarProcess(configYAML: """
            service: payments
            inbound:  { listen: 127.0.0.1:\(payIn), app: 127.0.0.1:\(app.port) }
            outbound: { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            admin:    { listen: 127.0.0.1:\(try freeLoopbackPort()) }
            tls:      { cert: certs/payments.pem, key: certs/payments.key, trustBundle: certs/ca.pem }
            """, in: directory, name: "payments", extraArguments: ["--access-log", "off"])
        #expect(await payments.waitUntilListening(ports: [payIn]), "\(payments.logs)")
        webOut = try freeLoopbackPort()
        webAdmin = try freeLoopbackPort()
        let web = try SidecarProcess(configYAML: """
            service: web
            inbound:  { listen: 127.0.0.1:\(try freeLoopbackPort()), app: 127.0.0.1:1 }
            outbound: { listen: 127.0.0.1:\(webOut) }
            admin:    { listen: 127.0.0.1:\(webAdmin) }
            tls:      { cert: certs/web.pem, key: certs/web.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: Instance, service: payments, address: 127.0.0.1, port: \(payIn) }
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: / }
                    retries: { attempts: 3, retryOn: [connect-failure, reset, 503], backoff: { base: 5ms, max: 20ms } }
            """, in: directory, name: "web", extraArguments: ["--access-log", "off"])
        #expect(await web.waitUntilListening(ports: [webOut]), "\(web.logs)")
        sidecars = [payments, web]
    }

    deinit {
        sidecars.forEach { $0.stop() }
        directory.remove()
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
