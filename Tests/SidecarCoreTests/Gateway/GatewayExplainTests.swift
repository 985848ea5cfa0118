import Foundation
import NIOCore
import Testing

@testable import SidecarCore

/// `/explain` on a gateway runs the gateway's own filters in dry run: which GatewayRoute rule
/// takes the request and where it goes, what authentication verified from the credentials
/// asked with, the rate limit's bucket (no token taken, no failure counted), and whether the
/// response cache would answer; the decision is what a real request gets next.
@Suite struct GatewayExplainTests {
    typealias H = ExchangeHarness

    static let keys = AuthenticationPolicy(name: "keys", apiKeys: .init(keys: [.init(name: "acme", sha256: GatewayAuthenticatorTests.sha256("k1"))]))

    static func harness() throws -> H {
        try GatewayFilterTests.harness(
            GatewayRule(
                match: RouteMatch(path: .prefix("/api")), service: "payments", rewritePathPrefix: "/", auth: "keys",
                rateLimit: GatewayRateLimit(limit: RateLimit(requestsPerSecond: 1, burst: 1), key: .apiKey),
                cache: GatewayCachePolicy(ttl: .seconds(60), maxBytes: 1 << 20, allowAuthorization: true)),
            policies: [keys])
    }

    func explain(_ h: H, _ uri: String, gateway: Bool = true) throws -> [String: Any] {
        let query = try Explain.query(fromURI: uri).get()
        let json = Explain.report(query, loop: h.context, certificateExpiry: 0, gateway: gateway)
        return try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test func theRuleAuthenticationRateLimitAndCacheAreExplainedAndTheDecisionIsTheNextRequests() throws {
        let h = try Self.harness()
        let anonymous = try explain(h, "/explain?authority=api.example.com&path=/api/pay/1")
        #expect(anonymous["direction"] as? String == "gateway")
        #expect(anonymous["decision"] as? String == "unauthenticated" && anonymous["status"] as? Int == 401, "\(anonymous)")
        #expect(h.metrics.gatewayAuthFailures(policy: "keys", reason: .missing).value == 0, "asking is no failure")

        let uri = "/explain?authority=api.example.com&path=/api/pay/1&header=x-api-key:%20k1&client=10.1.2.3"
        let report = try explain(h, uri)
        #expect(report["decision"] as? String == "forward", "\(report)")
        let rule = try #require(report["gatewayRule"] as? [String: Any])
        #expect(rule["route"] as? String == "api" && rule["index"] as? Int == 0 && rule["upstreamPath"] as? String == "/pay/1")
        #expect((report["authentication"] as? [String: Any])?["verifiedUser"] as? String == "acme")
        let limit = try #require(report["gatewayRateLimit"] as? [String: Any])
        #expect(limit["key"] as? String == "user:acme" && limit["allowsNow"] as? Bool == true)
        #expect(report["destination"] as? String == "payments", "the mesh side as for any caller")

        // A real request takes the one token and fills the cache: the next is answered from it.
        try h.send(GatewayFilterTests.get("/api/pay/1", "x-api-key: k1\r\n"))
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK"))
        let after = try explain(h, uri)
        #expect(after["decision"] as? String == "rate-limited", "the bucket is empty: \(after)")
        #expect((after["cache"] as? [String: Any])?["keyFresh"] as? Int == 1, "\(after)")
        h.loop.advanceTime(by: .seconds(1))
        #expect(try explain(h, uri)["decision"] as? String == "cache")
    }

    @Test func aHostNoRouteTakesIsNoRouteAndTheOutboundCanStillBeAsked() throws {
        let h = try Self.harness()
        #expect(try explain(h, "/explain?authority=other.example.com&path=/api")["decision"] as? String == "no-route")
        let outbound = try explain(h, "/explain?authority=payments&path=/pay&direction=outbound")
        #expect(outbound["direction"] == nil && outbound["decision"] as? String == "forward", "\(outbound)")
        guard case .failure = Explain.query(fromURI: "/explain?authority=a&direction=sideways") else {
            Issue.record("an unknown direction was accepted")
            return
        }
    }
}
