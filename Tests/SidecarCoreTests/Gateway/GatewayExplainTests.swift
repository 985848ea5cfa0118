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

    /// Both listeners, the plain one routing as the HTTPS one does.
    static let both = Explain.Listeners(http: GatewayListenerRole(secure: false), https: GatewayListenerRole(secure: true))
    /// Both, the plain one redirecting to HTTPS on 8443.
    static let redirecting = Explain.Listeners(
        http: GatewayListenerRole(secure: false, redirectToHttps: true, httpsPort: { 8443 }), https: GatewayListenerRole(secure: true))

    func explain(_ h: H, _ uri: String, gateway: Explain.Listeners? = both) throws -> [String: Any] {
        let json = try report(h, uri, gateway: gateway).get()
        return try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    func report(_ h: H, _ uri: String, gateway: Explain.Listeners?) throws -> Result<String, Explain.ExplainError> {
        Explain.report(try Explain.query(fromURI: uri).get(), loop: h.context, certificateExpiry: 0, gateway: gateway)
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

    /// The listener is the request's: a gateway with only a plain listener explains on it, one
    /// with only HTTPS on that; with both, the one asked for (`listener=`), else HTTPS while they
    /// answer alike. When the plain one redirects, not naming one is a 400 that says so, and the
    /// plain one's answer is its 308 (what a client gets), by the same filter chain as traffic.
    @Test func theListenerIsTheOneAskedForOrTheOnlyOneAndARedirectIsExplained() throws {
        let h = try Self.harness()
        let uri = "/explain?authority=api.example.com&path=/api/pay/1&header=x-api-key:%20k1"
        let plainOnly = try explain(h, uri, gateway: Explain.Listeners(http: GatewayListenerRole(secure: false)))
        #expect(plainOnly["listener"] as? String == "http" && plainOnly["decision"] as? String == "forward", "\(plainOnly)")
        let tlsOnly = try explain(h, uri, gateway: Explain.Listeners(https: GatewayListenerRole(secure: true)))
        #expect(tlsOnly["listener"] as? String == "https" && tlsOnly["decision"] as? String == "forward", "\(tlsOnly)")
        #expect(try explain(h, uri)["listener"] as? String == "https", "both alike: HTTPS")
        #expect(try explain(h, uri + "&listener=http")["listener"] as? String == "http")

        let redirected = try explain(h, uri + "&listener=http", gateway: Self.redirecting)
        #expect(redirected["decision"] as? String == "answer" && redirected["status"] as? Int == 308, "\(redirected)")
        #expect((redirected["headers"] as? [String: Any])?["location"] as? String == "https://api.example.com:8443/api/pay/1")
        #expect(try explain(h, uri + "&listener=https", gateway: Self.redirecting)["decision"] as? String == "forward")

        let refusals: [(String, Explain.Listeners?, String)] = [
            (uri, Self.redirecting, "listener=http or listener=https"),
            (uri + "&listener=https", Explain.Listeners(http: GatewayListenerRole(secure: false)), "no gateway.https listener"),
            (uri + "&listener=http", nil, "listener is for direction=gateway"),
            (uri + "&direction=outbound&listener=http", Self.both, "listener is for direction=gateway"),
            (uri + "&direction=gateway", nil, "direction=gateway: this sidecar is no gateway"),
        ]
        for (asked, listeners, message) in refusals {
            guard case .failure(let error) = try report(h, asked, gateway: listeners) else {
                Issue.record("\(asked) was explained")
                continue
            }
            #expect(error.message.contains(message), "\(error.message)")
        }
        guard case .failure(let error) = Explain.query(fromURI: uri + "&listener=ftp") else {
            Issue.record("an unknown listener was accepted")
            return
        }
        #expect(error.message.hasPrefix("listener is http or https"))
    }
}
