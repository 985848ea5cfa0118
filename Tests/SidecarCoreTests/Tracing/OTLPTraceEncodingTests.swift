import Foundation
import Testing

@testable import SidecarCore

/// The OTLP JSON request: hex ids, integer enums, 64-bit times as strings, attributes, the
/// error status, and names escaped as JSON.
@Suite struct OTLPTraceEncodingTests {
    func decode(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func aBatchIsOneResourceWithItsServiceAndTheSpans() throws {
        let server = SpanRecord(
            traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "b7ad6b7169203331", parentSpanID: "00f067aa0ba902b7",
            kind: .server, startUnixNanos: 1_700_000_000_123_456_789, endUnixNanos: 1_700_000_000_124_000_000,
            method: "POST", peer: "web", status: 200, meshError: nil)
        let client = SpanRecord(
            traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "c7ad6b7169203331", parentSpanID: nil,
            kind: .client, startUnixNanos: 5, endUnixNanos: 6, method: "GET", peer: "ledger", status: 503,
            meshError: "no-healthy-upstream")
        let root = try decode(OTLPTraceEncoding.request(service: "pay\"ments", spans: [server, client]))
        let resourceSpans = try #require(root["resourceSpans"] as? [[String: Any]])
        #expect(resourceSpans.count == 1)
        let resource = try #require(resourceSpans[0]["resource"] as? [String: Any])
        let attributes = try #require(resource["attributes"] as? [[String: Any]])
        #expect(attributes.first?["key"] as? String == "service.name")
        #expect((attributes.first?["value"] as? [String: Any])?["stringValue"] as? String == "pay\"ments")
        let scope = try #require((resourceSpans[0]["scopeSpans"] as? [[String: Any]])?.first)
        #expect((scope["scope"] as? [String: Any])?["name"] as? String == "mesh-sidecar")
        let spans = try #require(scope["spans"] as? [[String: Any]])
        #expect(spans.count == 2)

        #expect(spans[0]["traceId"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(spans[0]["spanId"] as? String == "b7ad6b7169203331")
        #expect(spans[0]["parentSpanId"] as? String == "00f067aa0ba902b7")
        #expect(spans[0]["kind"] as? Int == 2)
        #expect(spans[0]["name"] as? String == "POST web")
        #expect(spans[0]["startTimeUnixNano"] as? String == "1700000000123456789", "int64 as a decimal string")
        #expect(spans[0]["endTimeUnixNano"] as? String == "1700000000124000000")
        #expect(spans[0]["status"] == nil, "a 200 leaves the status unset")
        let serverAttributes = try #require(spans[0]["attributes"] as? [[String: Any]])
        #expect(serverAttributes.map { $0["key"] as? String } == [
            "http.request.method", "http.response.status_code", "mesh.peer",
        ])
        #expect((serverAttributes[1]["value"] as? [String: Any])?["intValue"] as? String == "200")

        #expect(spans[1]["parentSpanId"] == nil, "a trace's first span has no parent")
        #expect(spans[1]["kind"] as? Int == 3)
        #expect((spans[1]["status"] as? [String: Any])?["code"] as? Int == 2, "STATUS_CODE_ERROR")
        let clientAttributes = try #require(spans[1]["attributes"] as? [[String: Any]])
        #expect(clientAttributes.last?["key"] as? String == "mesh.error")
        #expect((clientAttributes.last?["value"] as? [String: Any])?["stringValue"] as? String == "no-healthy-upstream")
    }

    @Test(arguments: [
        (SpanRecord.Kind.server, 404, nil as String?, false), (.client, 404, nil, true), (.server, 500, nil, true),
        (.server, 200, "timeout", true), (.client, 302, nil, false),
    ])
    func errorStatusFollowsOTelsHTTPRules(_ kind: SpanRecord.Kind, _ status: Int, _ cause: String?, _ isError: Bool) {
        let span = SpanRecord(
            traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "b7ad6b7169203331", parentSpanID: nil, kind: kind,
            startUnixNanos: 0, endUnixNanos: 0, method: "GET", peer: "p", status: status, meshError: cause)
        #expect(span.isError == isError)
    }
}
