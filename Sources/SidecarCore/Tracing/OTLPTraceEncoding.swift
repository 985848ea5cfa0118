/// A batch of `SpanRecord`s as an OTLP `ExportTraceServiceRequest` in OTLP's JSON encoding
/// (the protobuf JSON mapping with OTLP's exceptions: trace and span ids as hex strings, enum
/// values as integers, 64-bit integers as decimal strings), for `POST /v1/traces` with
/// `Content-Type: application/json`.
///
/// Written by hand, without Foundation: every value but the service and peer names and the
/// method is a number or hex, and those are escaped as JSON strings.
enum OTLPTraceEncoding {
    static let scopeName = "mesh-sidecar"

    /// `{"resourceSpans":[{"resource":{service.name},"scopeSpans":[{"scope":…,"spans":[…]}]}]}`.
    static func request<Spans: Sequence>(service: String, spans: Spans) -> [UInt8] where Spans.Element == SpanRecord {
        var out = "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
        appendAttribute("service.name", string: service, to: &out)
        out += "]},\"scopeSpans\":[{\"scope\":{\"name\":\"\(scopeName)\",\"version\":"
        out += ConfigValue.quoted(MeshVersion.current)
        out += "},\"spans\":["
        var first = true
        for span in spans {
            if !first { out += "," }
            first = false
            append(span, to: &out)
        }
        out += "]}]}]}"
        return Array(out.utf8)
    }

    static func append(_ span: SpanRecord, to out: inout String) {
        // Ids are lowercase hex (validated or made by TraceContext): no escaping needed.
        out += "{\"traceId\":\"\(span.traceID)\",\"spanId\":\"\(span.spanID)\""
        if let parent = span.parentSpanID { out += ",\"parentSpanId\":\"\(parent)\"" }
        out += ",\"name\":"
        out += ConfigValue.quoted("\(span.method) \(span.peer)")
        out += ",\"kind\":\(span.kind.rawValue)"
        out += ",\"startTimeUnixNano\":\"\(span.startUnixNanos)\",\"endTimeUnixNano\":\"\(span.endUnixNanos)\""
        out += ",\"attributes\":["
        appendAttribute("http.request.method", string: span.method, to: &out)
        out += ","
        appendAttribute("http.response.status_code", int: span.status, to: &out)
        out += ","
        appendAttribute("mesh.peer", string: span.peer, to: &out)
        if let cause = span.meshError {
            out += ","
            appendAttribute("mesh.error", string: cause, to: &out)
        }
        // STATUS_CODE_ERROR is 2; an unset status is left out.
        out += "]"
        if span.isError { out += ",\"status\":{\"code\":2}" }
        out += "}"
    }

    private static func appendAttribute(_ key: String, string value: String, to out: inout String) {
        out += "{\"key\":\"\(key)\",\"value\":{\"stringValue\":"
        out += ConfigValue.quoted(value)
        out += "}}"
    }

    private static func appendAttribute(_ key: String, int value: Int, to out: inout String) {
        out += "{\"key\":\"\(key)\",\"value\":{\"intValue\":\"\(value)\"}}"
    }
}
