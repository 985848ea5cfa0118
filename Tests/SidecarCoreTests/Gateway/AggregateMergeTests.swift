import Testing
@testable import SidecarCore

/// An aggregate rule's answer from its calls' outcomes: JSON under the keys, `null` and a
/// cause under `_errors` for a call that failed or came late, 502 only when every call failed;
/// and its config, decoded with errors that name the key.
@Suite struct AggregateMergeTests {
    static func json(_ text: String) -> AggregateMerge.Outcome { .json(Array(text.utf8)) }

    @Test func bodiesAreMergedUnderTheirKeysAndFailuresAreNullWithTheirCause() {
        let answer = AggregateMerge.answer(
            keys: ["user", "orders", "late"], outcomes: ["user": Self.json("{\"id\":1}"), "orders": .failed("status-500")])
        #expect(answer == .success("{\"user\":{\"id\":1},\"orders\":null,\"late\":null,\"_errors\":{\"orders\":\"status-500\",\"late\":\"timeout\"}}"))
        #expect(AggregateMerge.answer(keys: ["a"], outcomes: ["a": Self.json("[1, 2]")]) == .success("{\"a\":[1, 2]}"))
    }

    @Test func everyCallFailingIs502WithTheFirstCausesTaxonomyWord() {
        guard case .failure(let error) = AggregateMerge.answer(
            keys: ["a", "b"], outcomes: ["a": .failed("no-healthy-endpoint"), "b": .failed("status-500")])
        else {
            Issue.record("answered 200")
            return
        }
        #expect(error.cause == .noHealthyEndpoint && error.status == 502)
        #expect(error.detail.contains("a: no-healthy-endpoint; b: status-500"))
        guard case .failure(let other) = AggregateMerge.answer(keys: ["a"], outcomes: ["a": .failed("invalid-json")]) else {
            Issue.record("answered 200")
            return
        }
        #expect(other.cause == .upstreamReset && other.status == 502)
    }

    /// A call the sidecar refused (breaker open, no healthy endpoint) whose service has a JSON
    /// `fallback` gets that body as its value, its cause still under `_errors`; a fallback that
    /// is no JSON is `null` as any failure. A fallback value is an answer: not all failed.
    @Test func aRefusedCallTakesItsJSONFallbackAndKeepsItsCause() {
        var open = ProxyError(.circuitOpen, "payments: circuit breaker max-requests reached")
        #expect(AggregateMerge.outcome(open) == .failed("circuit-open"), "no fallback")
        open.fallback = FallbackResponse(status: 200, headers: [:], body: "{\"degraded\":true}")
        #expect(AggregateMerge.outcome(open) == .fallback(Array("{\"degraded\":true}".utf8), cause: "circuit-open"))
        var text = ProxyError(.noHealthyEndpoint, "none")
        text.fallback = FallbackResponse(status: 503, headers: [:], body: "try later")
        #expect(AggregateMerge.outcome(text) == .failed("no-healthy-endpoint"))

        let answer = AggregateMerge.answer(
            keys: ["user", "orders"], outcomes: ["user": AggregateMerge.outcome(open), "orders": AggregateMerge.outcome(text)])
        #expect(answer == .success("{\"user\":{\"degraded\":true},\"orders\":null,\"_errors\":{\"user\":\"circuit-open\",\"orders\":\"no-healthy-endpoint\"}}"))
    }

    @Test func anAnswerCountsWhenItIsA2xxWithOneJSONValue() {
        #expect(AggregateMerge.outcome(status: 200, meshError: nil, body: Array("{\"a\":1}".utf8)) == Self.json("{\"a\":1}"))
        #expect(AggregateMerge.outcome(status: 200, meshError: nil, body: Array("{\"a\":".utf8)) == .failed("invalid-json"))
        #expect(AggregateMerge.outcome(status: 200, meshError: nil, body: Array("{} {}".utf8)) == .failed("invalid-json"))
        #expect(AggregateMerge.outcome(status: 503, meshError: "circuit-open", body: []) == .failed("circuit-open"))
        #expect(AggregateMerge.outcome(status: 404, meshError: nil, body: Array("{}".utf8)) == .failed("status-404"))
    }

    @Test func aChunkedAnswerIsDecoded() {
        #expect(AggregateCall.dechunked(Array("4\r\n{\"a\"\r\n3;x=1\r\n:1}\r\n0\r\nt: v\r\n\r\n".utf8)) == Array("{\"a\":1}".utf8))
        #expect(AggregateCall.dechunked(Array("zz\r\n".utf8)) == nil)
        #expect(AggregateCall.dechunked(Array("5\r\nab".utf8)) == nil)
    }

    @Test func aggregateRulesDecodeAndBadOnesNameTheKey() throws {
        let yaml = """
            kind: GatewayRoute
            name: home
            rules:
              - match: { path: /home }
                aggregate:
                  timeout: 1s
                  calls: [ { key: user, service: users, path: /me }, { key: orders, service: orders, path: "/recent?n=5" } ]
            """
        let decoded = try MeshResourceDecoder.decodeDocuments(yaml: yaml)
        guard case .gatewayRoute(let route) = decoded.first else {
            Issue.record("\(decoded)")
            return
        }
        #expect(route.rules[0].aggregate == GatewayAggregate(timeout: .seconds(1), calls: [
            .init(key: "user", service: "users", path: "/me"), .init(key: "orders", service: "orders", path: "/recent?n=5"),
        ]))
        #expect(route.rules[0].services == ["users", "orders"])
        #expect(try MeshResourceDecoder.decodeDocuments(yaml: MeshResource.yaml(decoded)) == decoded)
        let cases: [(String, String)] = [
            ("rules: [ { service: a, aggregate: { timeout: 1s, calls: [ { key: k, service: b, path: /x } ] } } ]", "rules[0].service"),
            ("rules: [ { aggregate: { timeout: 1s, calls: [] } } ]", "rules[0].aggregate.calls"),
            ("rules: [ { aggregate: { calls: [ { key: k, service: b, path: /x } ] } } ]", "rules[0].aggregate.timeout"),
            ("rules: [ { aggregate: { timeout: 1s, calls: [ { key: _errors, service: b, path: /x } ] } } ]",
             "rules[0].aggregate.calls[0].key"),
            ("rules: [ { aggregate: { timeout: 1s, calls: [ { key: k, service: b, path: /x }, { key: k, service: c, path: /y } ] } } ]",
             "rules[0].aggregate.calls[1].key"),
            ("rules: [ { aggregate: { timeout: 1s, calls: [ { key: k, service: b, path: x } ] } } ]", "rules[0].aggregate.calls[0].path"),
            ("rules: [ { cache: { ttl: 1s, maxBytes: 1Mi }, aggregate: { timeout: 1s, calls: [ { key: k, service: b, path: /x } ] } } ]",
             "rules[0].cache"),
            ("rules: [ { match: { path: /x } } ]", "rules[0].service"),
        ]
        for (rules, path) in cases {
            do {
                _ = try MeshResourceDecoder.decodeDocuments(yaml: "kind: GatewayRoute\nname: a\n" + rules + "\n")
                Issue.record("accepted: \(rules)")
            } catch {
                #expect(error.description.contains("\(path): "), "\(path): \(error)")
            }
        }
    }
}
