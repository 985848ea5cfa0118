import Foundation
import NIOCore
import Testing

@testable import SidecarCore

/// `/explain` runs the outbound filters a real request runs, in dry run: its decision is the
/// next request's, and asking takes nothing a request would need.
@Suite struct ExplainTests {
    typealias H = ExchangeHarness

    func explain(_ h: H, _ uri: String) throws -> [String: Any] {
        let query = try Explain.query(fromURI: uri).get()
        let json = try Explain.report(query, loop: h.context, certificateExpiry: 1_900_000_000).get()
        return try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test func aRoutableRequestIsForwardedAndTheReportShowsWhy() throws {
        let h = try H(rules: [RouteRule(match: RouteMatch(path: .prefix("/pay")))])
        let report = try explain(h, "/explain?authority=payments&path=/pay/x/../y&method=GET")
        #expect(report["decision"] as? String == "forward")
        #expect((report["request"] as? [String: Any])?["path"] as? String == "/pay/y", "the normalized path")
        #expect(report["destination"] as? String == "payments")
        #expect(report["expectedPeer"] as? String == "spiffe://mesh.local/service/payments")
        #expect((report["rule"] as? [String: Any])?["index"] as? Int == 0)
        #expect((report["endpoints"] as? [[String: Any]])?.count == 2)
        #expect(report["certificateExpiry"] as? Int == 1_900_000_000)
    }

    @Test func theDecisionIsTheFilterChainsCause() throws {
        let h = try H(rules: [RouteRule(match: RouteMatch(path: .prefix("/pay")))])
        #expect(try explain(h, "/explain?authority=payments&path=/other")["decision"] as? String == "no-route")
        #expect(try explain(h, "/explain?authority=nowhere")["decision"] as? String == "no-route")
        let report = try explain(h, "/explain?authority=payments&path=/pay&method=G%20T")
        #expect(report["decision"] as? String == "bad-request")
    }

    @Test func aFullBreakerIsExplainedAsCircuitOpenWithoutCountingARejection() throws {
        var policy = TrafficPolicy.default(service: "payments")
        policy.circuitBreaker.maxRequests = 1
        let h = try H(rules: [RouteRule()], policy: policy)
        #expect(try explain(h, "/explain?authority=payments")["decision"] as? String == "forward")
        try h.send(H.get())  // holds the one slot
        let report = try explain(h, "/explain?authority=payments")
        #expect(report["decision"] as? String == "circuit-open")
        #expect(report["status"] as? Int == 503)
        #expect((report["circuitBreaker"] as? [String: Any])?["requests"] as? Int == 1)
        #expect(h.metrics.peer("payments").circuitBreakerRejections.value == 0, "asking is not a rejection")
        try h.upstreams.respond(0, H.ok)
        #expect(try explain(h, "/explain?authority=payments")["decision"] as? String == "forward")
    }

    @Test func askingTakesNoRateLimitToken() throws {
        let h = try H(rules: [RouteRule(rateLimit: RateLimit(requestsPerSecond: 1, burst: 1))])
        for _ in 0..<3 {
            let report = try explain(h, "/explain?authority=payments")
            #expect(report["decision"] as? String == "forward")
            #expect((report["rateLimit"] as? [String: Any])?["allowsNow"] as? Bool == true)
        }
        try h.send(H.get())
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer().hasPrefix("HTTP/1.1 200 OK\r\n"), "the token was still there for the request")
        #expect(try explain(h, "/explain?authority=payments")["decision"] as? String == "rate-limited")
    }

    @Test func aBadQueryIsRefusedWithWhatToSend() {
        for uri in ["/explain", "/explain?path=/pay", "/explain?authority=a&color=red", "/explain?authority=%zz"] {
            guard case .failure(let error) = Explain.query(fromURI: uri) else {
                Issue.record("\(uri) was accepted")
                continue
            }
            #expect(!error.message.isEmpty)
        }
        let decoded = try? Explain.query(fromURI: "/explain?authority=payments.mesh%3A80&path=%2Fpay+x").get()
        #expect(decoded == Explain.Query(authority: "payments.mesh:80", path: "/pay x", method: "GET"))
    }
}
