import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// The gateway's filters in whole exchanges in memory (`ExchangeHarness` with a gateway
/// handler): routing by host and path with a rewrite, the redirect, CORS preflight, body size,
/// keyed rate limits, authentication and the identity headers a client cannot set.
@Suite struct GatewayFilterTests {
    typealias H = ExchangeHarness

    static func harness(_ rule: GatewayRule, secure: Bool = true, redirect: Bool = false, policies: [AuthenticationPolicy] = []) throws -> H {
        let route = GatewayRoute(name: "api", hosts: ["api.example.com"], rules: [rule])
        return try H(
            rules: [RouteRule(retries: RetryPolicy(attempts: 1))],
            extraResources: [.gatewayRoute(route)] + policies.map { .authenticationPolicy($0) },
            direction: .gateway(GatewayListenerRole(secure: secure, redirectToHttps: redirect, httpsPort: { 8443 })))
    }

    static func get(_ target: String, _ headers: String = "") -> String {
        "GET \(target) HTTP/1.1\r\nHost: api.example.com\r\n\(headers)\r\n"
    }

    @Test func aRuleRoutesToItsServiceWithTheRewrittenPathAndNoForgedIdentity() throws {
        let h = try Self.harness(GatewayRule(match: RouteMatch(path: .prefix("/api")), service: "payments", rewritePathPrefix: "/"))
        try h.send(Self.get("/api/pay/1?x=2", "X-Mesh-User: root\r\nx_mesh_caller: admin\r\n"))
        let sent = try h.upstreams.received(0)
        #expect(sent.hasPrefix("GET /pay/1?x=2 HTTP/1.1\r\n"), "\(sent)")
        #expect(!sent.lowercased().contains("mesh-user") && !sent.lowercased().contains("mesh_caller"), "\(sent)")
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(h.metrics.requests.handle(direction: .gateway, peer: "payments").count(status: 200) == 1)

        try h.send("GET /api/pay HTTP/1.1\r\nHost: other.example.com\r\n\r\n")
        #expect(try h.answer().contains("x-mesh-error: no-route"))
    }

    /// A route's host matches in any case and with a port; an absolute-form target's authority
    /// replaces `Host` (RFC 9112 §3.2.2) for routing as it does upstream.
    @Test func theHostMatchesInAnyCaseWithAPortAndAnAbsoluteTargetsAuthorityReplacesIt() throws {
        let h = try Self.harness(GatewayRule(service: "payments"))
        try h.send("GET /pay HTTP/1.1\r\nHost: API.Example.com:8443\r\n\r\n")
        #expect(try h.upstreams.received(0).hasPrefix("GET /pay HTTP/1.1\r\n"))
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))

        try h.send("GET http://api.example.com/pay HTTP/1.1\r\nHost: other.example.com\r\n\r\n")
        let sent = try h.upstreams.received(0)
        #expect(sent.hasPrefix("GET /pay HTTP/1.1\r\n") && sent.lowercased().contains("host: api.example.com\r\n"), "\(sent)")
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"))

        try h.send("GET http://other.example.com/pay HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        #expect(try h.answer().contains("x-mesh-error: no-route"))
    }

    @Test func thePlainListenerRedirects() throws {
        let h = try Self.harness(GatewayRule(service: "payments"), secure: false, redirect: true)
        try h.send(Self.get("/a?b=1"))
        let answer = try h.answer()
        #expect(answer.hasPrefix("HTTP/1.1 308 Permanent Redirect\r\nlocation: https://api.example.com:8443/a?b=1\r\n"), "\(answer)")
        #expect(!answer.contains("x-mesh-error"))
        #expect(h.upstreams.connections.isEmpty)
    }

    @Test func aPreflightIsAnsweredAtTheEdgeAndResponsesCarryTheOrigin() throws {
        let cors = CORSPolicy(allowOrigins: ["https://app.example.com"], allowMethods: ["GET", "POST"], maxAge: .seconds(600))
        let h = try Self.harness(GatewayRule(service: "payments", cors: cors))
        try h.send("OPTIONS /x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\n"
                   + "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: Content-Type, X-Trace\r\n\r\n")
        let preflight = try h.answer()
        #expect(preflight.hasPrefix("HTTP/1.1 204 No Content\r\n"), "\(preflight)")
        #expect(preflight.contains("access-control-allow-origin: https://app.example.com\r\n"))
        #expect(preflight.contains("access-control-allow-methods: GET, POST\r\n"))
        #expect(preflight.contains("access-control-allow-headers: content-type, x-trace\r\n"))
        #expect(preflight.contains("access-control-max-age: 600\r\n"))
        #expect(h.upstreams.connections.isEmpty)

        try h.send("OPTIONS /x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n\r\n")
        #expect(try h.answer().hasPrefix("HTTP/1.1 403 Forbidden\r\n"))

        try h.send(Self.get("/x", "Origin: https://app.example.com\r\n"))
        try h.upstreams.respond(0, H.ok)
        let answer = try h.answer()
        #expect(answer.contains("access-control-allow-origin: https://app.example.com\r\n"), "\(answer)")
    }

    /// "Other responses to an allowed Origin get Access-Control-Allow-Origin": the gateway's own
    /// refusals after the CORS step too (a browser reads a 401 or a 429 only with it).
    @Test func aRefusalToAnAllowedOriginCarriesTheOrigin() throws {
        let cors = CORSPolicy(allowOrigins: ["https://app.example.com"], allowMethods: ["GET"])
        let policy = AuthenticationPolicy(name: "keys", apiKeys: .init(keys: [.init(name: "acme", sha256: GatewayAuthenticatorTests.sha256("k1"))]))
        let h = try Self.harness(GatewayRule(service: "payments", auth: "keys", cors: cors), policies: [policy])
        try h.send(Self.get("/x", "Origin: https://app.example.com\r\n"))
        let refused = try h.answer()
        #expect(refused.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"), "\(refused)")
        #expect(refused.contains("access-control-allow-origin: https://app.example.com\r\nvary: origin\r\n"), "\(refused)")
        try h.send(Self.get("/x", "Origin: https://evil.example\r\n"))
        #expect(!(try h.answer()).contains("access-control-allow-origin"))
    }

    @Test func aLargerBodyIsRefusedWith413() throws {
        let h = try Self.harness(GatewayRule(service: "payments", maxBodyBytes: 10))
        try h.send("POST /x HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 11\r\n\r\nhello world")
        #expect(try h.answer().hasPrefix("HTTP/1.1 413 Content Too Large\r\n"))
        #expect(h.upstreams.connections.isEmpty)

        let chunked = try Self.harness(GatewayRule(service: "payments", maxBodyBytes: 10))
        try chunked.send("POST /x HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        #expect(try chunked.answer().isEmpty)
        try chunked.send("6\r\n world\r\n0\r\n\r\n")
        #expect(try chunked.answer().hasPrefix("HTTP/1.1 413 Content Too Large\r\n"))
    }

    @Test func theRateLimitIsPerKeyWithRetryAfter() throws {
        let limit = GatewayRateLimit(limit: RateLimit(requestsPerSecond: 1, burst: 1), key: .apiKey)
        let policy = AuthenticationPolicy(name: "keys", apiKeys: .init(keys: [
            .init(name: "acme", sha256: GatewayAuthenticatorTests.sha256("k1")),
            .init(name: "zeta", sha256: GatewayAuthenticatorTests.sha256("k2")),
        ]))
        let h = try Self.harness(GatewayRule(service: "payments", auth: "keys", rateLimit: limit), policies: [policy])
        try h.send(Self.get("/x", "x-api-key: k1\r\n"))
        #expect(try h.upstreams.received(0).contains("x-mesh-user: acme\r\n"))
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK"))
        try h.send(Self.get("/x", "x-api-key: k1\r\n"))
        let limited = try h.answer()
        #expect(limited.hasPrefix("HTTP/1.1 429 Too Many Requests\r\n") && limited.contains("retry-after: 1\r\n"), "\(limited)")
        try h.send(Self.get("/x", "x-api-key: k2\r\n"))
        let last = h.upstreams.connections.count - 1
        #expect(try h.upstreams.received(last).contains("x-mesh-user: zeta\r\n"), "another key has its own bucket")
    }

    @Test func aMissingOrWrongCredentialIs401WithAChallenge() throws {
        let policy = AuthenticationPolicy(name: "keys", apiKeys: .init(keys: [.init(name: "acme", sha256: GatewayAuthenticatorTests.sha256("k1"))]))
        let h = try Self.harness(GatewayRule(service: "payments", auth: "keys"), policies: [policy])
        for headers in ["", "x-api-key: nope\r\n"] {
            try h.send(Self.get("/x", headers))
            let answer = try h.answer()
            #expect(answer.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"), "\(answer)")
            #expect(answer.contains("x-mesh-error: unauthenticated\r\n"))
            #expect(answer.contains("www-authenticate: ApiKey realm=\"keys\", header=\"x-api-key\"\r\n"))
        }
        #expect(h.metrics.gatewayAuthFailures(policy: "keys", reason: .missing).value == 1)
        #expect(h.metrics.gatewayAuthFailures(policy: "keys", reason: .wrongKey).value == 1)
        #expect(h.upstreams.connections.isEmpty)
    }
}
