import Foundation
import MeshTestSupport
import Testing

/// What a sidecar does for a caller also holds for gateway traffic: a canary split between
/// label subsets and a header-matched rule (the destination's Route), the circuit breaker
/// with the TrafficPolicy's fallback; plus the edge's own CORS preflight and body limit. (The
/// split and the breaker run over curl's default, HTTP/2 by ALPN; the rest over HTTP/1.1.)
@Suite(.serialized) struct GatewayTrafficTests {
    static let resources = """
          - kind: GatewayRoute
            name: shop
            hosts: [ api.example.com ]
            rules:
              - match: { pathPrefix: /pay }
                service: payments
                cors: { allowOrigins: [ "https://app.example.com" ], allowMethods: [ GET, POST ], maxAge: 10m }
                maxBodyBytes: 16
          - kind: Route
            service: payments
            rules:
              - match: { pathPrefix: /pay, headers: { x-canary: "1" } }
                backends: [ { subset: { version: v2 }, weight: 100 } ]
              - match: { pathPrefix: /pay }
                retries: { attempts: 1 }
                timeout: 60s
                backends: [ { subset: { version: v1 }, weight: 70 }, { subset: { version: v2 }, weight: 30 } ]
          - kind: TrafficPolicy
            service: payments
            circuitBreaker: { maxRequests: 1 }
            fallback: { status: 200, headers: { content-type: application/json }, body: '{"degraded":true}' }
        """

    @Test func canarySplitAndHeaderRuleApplyThroughTheGateway() async throws {
        let v1 = try await TestHTTPApp(name: "payments-v1"), v2 = try await TestHTTPApp(name: "payments-v2")
        let edge = try await GatewayMesh(backends: [(v1, "version: v1"), (v2, "version: v2")], gatewayResources: Self.resources)
        let url = "https://api.example.com:\(edge.httpsPort)/pay"
        let split = try await ChildProcess.run(
            ["curl", "-sS", "--cacert", edge.externalCA, "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1"]
                + Array(repeating: url, count: 60).flatMap { ["-w", "\\n", $0] }, timeout: .seconds(120))
        let toV1 = split.stdout.components(separatedBy: "app=payments-v1").count - 1
        let toV2 = split.stdout.components(separatedBy: "app=payments-v2").count - 1
        #expect(toV1 + toV2 == 60 && toV1 > toV2 && toV2 > 0, "v1 \(toV1), v2 \(toV2): \(split.stderr)")
        let canary = try await edge.https("api.example.com", "/pay/c", ["-H", "x-canary: 1"])
        #expect(canary.body.contains("app=payments-v2"), "\(canary)")
    }

    @Test func theBreakerServesTheFallbackThroughTheGateway() async throws {
        let v1 = try await TestHTTPApp(name: "payments-v1"), v2 = try await TestHTTPApp(name: "payments-v2")
        let edge = try await GatewayMesh(backends: [(v1, "version: v1"), (v2, "version: v2")], gatewayResources: Self.resources)
        // One slow request (20 s: polls through TLS on a loaded machine took most of 10) holds the only breaker slot; a request meanwhile gets the degraded answer.
        // (Started as a process right away: an `async let` may not run before the polls below.)
        let slow = try ChildProcess([
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", edge.externalCA,
            "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1", "https://api.example.com:\(edge.httpsPort)/pay/slow?ms=20000",
        ])
        // Poll only once the slow request reached an app (it holds the slot): a poll that came
        // first would take the slot itself and send the slow request the fallback at once.
        #expect(await eventually(timeout: .seconds(30)) { v1.requests + v2.requests >= 1 }, "the slow request never reached an app")
        var fallback = try await edge.https("api.example.com", "/pay/now")
        for _ in 0..<300 where fallback.headers["x-mesh-error"] == nil {
            // The slow request may not have taken its slot yet (a bounded poll, not a fixed wait).
            try await Task.sleep(for: .milliseconds(20))
            fallback = try await edge.https("api.example.com", "/pay/now")
        }
        #expect(fallback.status == 200 && fallback.body == "{\"degraded\":true}", "\(fallback)")
        #expect(fallback.headers["x-mesh-error"] == "circuit-open", "\(fallback)")
        _ = await slow.wait(timeout: .seconds(45))
        #expect(slow.stdout == "200", "\(slow.stdout) \(slow.stderr)")
    }

    @Test func corsPreflightAndTheBodyLimitAreAnsweredAtTheEdge() async throws {
        let v1 = try await TestHTTPApp(name: "payments-v1"), v2 = try await TestHTTPApp(name: "payments-v2")
        let edge = try await GatewayMesh(backends: [(v1, "version: v1"), (v2, "version: v2")], gatewayResources: Self.resources)
        let preflight = try await edge.https("api.example.com", "/pay", [
            "-X", "OPTIONS", "-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: POST",
        ])
        #expect(preflight.status == 204, "\(preflight)")
        #expect(preflight.headers["access-control-allow-origin"] == "https://app.example.com")
        #expect(preflight.headers["access-control-allow-methods"] == "GET, POST")
        #expect(preflight.headers["access-control-max-age"] == "600")
        let refused = try await edge.https("api.example.com", "/pay", [
            "-X", "OPTIONS", "-H", "Origin: https://evil.example", "-H", "Access-Control-Request-Method: POST",
        ])
        #expect(refused.status == 403 && refused.headers["access-control-allow-origin"] == nil, "\(refused)")
        let simple = try await edge.https("api.example.com", "/pay", ["-H", "Origin: https://app.example.com"])
        #expect(simple.status == 200 && simple.headers["access-control-allow-origin"] == "https://app.example.com", "\(simple)")

        let small = try await edge.https("api.example.com", "/pay", ["--data", "0123456789abcdef"])
        #expect(small.status == 200 && small.body.contains("body-bytes=16 "), "\(small)")
        let large = try await edge.https("api.example.com", "/pay", ["--data", "0123456789abcdefg"])
        #expect(large.status == 413 && large.headers["x-mesh-error"] == "bad-request", "\(large)")
        #expect(v1.requests + v2.requests == 2, "the preflights and the large body never reached the app")
    }
}
