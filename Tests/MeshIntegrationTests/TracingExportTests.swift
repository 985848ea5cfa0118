import Foundation
import MeshTestSupport
import Testing

/// OTLP/HTTP span export across two real sidecars (web → payments) to a collector the test
/// runs: one client span in web and one server span in payments per request, with the access
/// log's ids and the parent links of the W3C trace; a collector that is down or refuses costs
/// no request and its spans are counted as dropped.
@Suite(.serialized) struct TracingExportTests {
    /// Polls until the collector holds `count` spans (export batches leave within about 1 s).
    private func spans(_ collector: OTLPReceiver, count: Int) async -> [OTLPReceiver.Span] {
        _ = await eventually(timeout: .seconds(20)) { collector.spans.count >= count }
        return collector.spans
    }

    private func tracing(_ port: Int, sampling: Int = 100) -> String {
        "tracing: { otlpEndpoint: http://127.0.0.1:\(port), sampling: \(sampling) }"
    }

    @Test func aRequestThroughTwoSidecarsIsOneTraceOfLinkedSpans() async throws {
        let collector = try await OTLPReceiver()
        let app = try await TestHTTPApp(name: "payments")
        let mesh = try await PaymentsMesh(
            backends: [(app, "version: v1")], webResources: "", sidecarConfig: tracing(collector.port))
        let proxy = ["-x", "http://127.0.0.1:\(mesh.webOut)"]

        // The app's own span: web's client span must name it as parent.
        let callerSpan = "00f067aa0ba902b7", trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        let response = try await curl(proxy + ["-H", "traceparent: 00-\(trace)-\(callerSpan)-01", "http://payments/pay"])
        #expect(response.status == 200, "\(response.stderr)")
        let received = try #require(response.body.split(separator: " ").first { $0.hasPrefix("traceparent=") })
        let appTraceparent = String(received.dropFirst("traceparent=".count))

        let all = await spans(collector, count: 2)
        #expect(all.count == 2, "\(all)")
        let client = try #require(all.first { $0.service == "web" }, "\(all)")
        let server = try #require(all.first { $0.service == "payments" }, "\(all)")
        #expect(client.kind == 3 && server.kind == 2, "client span in web, server span in payments")
        #expect(client.traceID == trace && server.traceID == trace)
        #expect(client.parentSpanID == callerSpan)
        #expect(server.parentSpanID == client.spanID, "payments' span continues web's")
        #expect(appTraceparent == "00-\(trace)-\(server.spanID)-01", "the app sees payments' span as its parent")
        #expect(client.start <= server.start && server.end <= client.end + 1_000_000, "\(client) \(server)")
        #expect(client.name == "GET payments" && server.name == "GET web")
        #expect(client.attributes["http.request.method"] == "GET")
        #expect(client.attributes["http.response.status_code"] == "200")
        #expect(client.attributes["mesh.peer"] == "payments" && server.attributes["mesh.peer"] == "web")
        #expect(client.attributes["mesh.error"] == nil && client.statusCode == 0)
        #expect(collector.contentTypes.allSatisfy { $0 == "application/json" })

        // web's access log line carries the same ids as its span.
        let logged = await eventually { mesh.web.accessLog.contains("\"span_id\":\"\(client.spanID)\"") }
        #expect(logged, "\(mesh.web.accessLog)")
        #expect(mesh.web.accessLog.contains("\"trace_id\":\"\(trace)\""))
        #expect(metricValue(try await mesh.webMetrics(), "sidecar_spans_exported_total") == 1)
    }

    @Test func aMeshErrorIsAnErrorSpanAndANewTraceHasNoParent() async throws {
        let collector = try await OTLPReceiver()
        let app = try await TestHTTPApp(name: "payments")
        let mesh = try await PaymentsMesh(
            backends: [(app, "version: v1")], webResources: "", sidecarConfig: tracing(collector.port))
        // No route: web answers 404 itself, with x-mesh-error.
        let response = try await curl(["-x", "http://127.0.0.1:\(mesh.webOut)", "http://nowhere/"])
        #expect(response.headers["x-mesh-error"] != nil, "\(response)")
        let all = await spans(collector, count: 1)
        let span = try #require(all.first, "\(all)")
        #expect(span.parentSpanID == nil, "curl sent no traceparent: web started the trace")
        #expect(span.attributes["mesh.error"] == response.headers["x-mesh-error"])
        #expect(span.attributes["http.response.status_code"] == "\(response.status)")
        #expect(span.statusCode == 2, "STATUS_CODE_ERROR")
    }

    @Test func spansStillWaitingAtSIGTERMAreSentBeforeExit() async throws {
        let collector = try await OTLPReceiver()
        let app = try await TestHTTPApp(name: "payments")
        let mesh = try await PaymentsMesh(
            backends: [(app, "version: v1")], webResources: "", sidecarConfig: tracing(collector.port))
        let lines = try await mesh.run(["http://payments/pay"])
        #expect(lines.first?.hasPrefix("200 ") == true, "\(lines)")
        // At once: web's span waits for its batch's 1 s timer, which exit must not outrun.
        mesh.web.signal(SIGTERM)
        #expect(await mesh.web.process.wait() == 0, "\(mesh.web.logs)")
        #expect(collector.spans.contains { $0.service == "web" && $0.kind == 3 }, "\(collector.spans)")
    }

    @Test func samplingZeroExportsNothingAndRequestsStillPass() async throws {
        let collector = try await OTLPReceiver()
        let app = try await TestHTTPApp(name: "payments")
        let mesh = try await PaymentsMesh(
            backends: [(app, "version: v1")], webResources: "", sidecarConfig: tracing(collector.port, sampling: 0))
        let lines = try await mesh.run(Array(repeating: "http://payments/pay", count: 5))
        #expect(lines.allSatisfy { $0.hasPrefix("200 ") }, "\(lines)")
        // The access log is flushed within 100 ms; a span batch would have left within ~1 s.
        try await Task.sleep(for: .seconds(2))
        #expect(collector.posts == 0)
    }

    @Test(arguments: [503, 0])
    func spansTheCollectorRefusesOrNeverGetsAreDroppedAndCounted(_ status: Int) async throws {
        // 0: a collector that is not there (its port closed before the sidecars start).
        let collector = try await OTLPReceiver(status: status == 0 ? 200 : status)
        let port = collector.port
        if status == 0 { try await collector.close() }
        let app = try await TestHTTPApp(name: "payments")
        let mesh = try await PaymentsMesh(
            backends: [(app, "version: v1")], webResources: "", sidecarConfig: tracing(port))
        let lines = try await mesh.run(Array(repeating: "http://payments/pay", count: 3))
        #expect(lines.allSatisfy { $0.hasPrefix("200 ") }, "\(lines)")
        let dropped = await eventually(timeout: .seconds(20)) {
            let metrics = (try? await mesh.webMetrics()) ?? ""
            return metricValue(metrics, "sidecar_spans_dropped_total", ["reason": "export-failed"]) == 3
        }
        let metrics = try await mesh.webMetrics()
        #expect(dropped, "\(metrics.split(separator: "\n").filter { $0.contains("spans") })")
        #expect(metricValue(metrics, "sidecar_spans_exported_total") == 0)
        #expect(metricValue(metrics, "sidecar_spans_dropped_total", ["reason": "buffer-full"]) == 0)
        if status != 0 { #expect(collector.posts >= 1) }
    }
}
