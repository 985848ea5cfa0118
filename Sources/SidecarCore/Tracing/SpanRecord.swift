/// One finished hop as an OTLP span: what the exporter keeps per proxied request until its
/// batch is sent. A small value made once per sampled request (strings the exchange already
/// holds, two integers of wall time); the JSON is written later, off the request path.
struct SpanRecord: Equatable {
    /// OTLP `SpanKind`: an inbound hop is the callee's server span, an outbound hop the
    /// caller's client span.
    enum Kind: Int {
        case server = 2
        case client = 3
    }

    let traceID: String
    /// The span id the access log shows (`span_id`): the one this hop sent on.
    let spanID: String
    /// The caller's span (its `traceparent`), nil when this hop started the trace.
    let parentSpanID: String?
    let kind: Kind
    let startUnixNanos: UInt64
    let endUnixNanos: UInt64
    let method: String
    /// The peer service: the destination (client span) or the verified caller (server span).
    let peer: String
    let status: Int
    /// The `x-mesh-error` cause when the sidecar made or ended the answer.
    let meshError: String?

    /// Span status ERROR: a mesh error, a 5xx, or (as OTel's HTTP conventions say) a 4xx seen
    /// by the caller's side.
    var isError: Bool {
        meshError != nil || status >= 500 || status == 0 || (kind == .client && status >= 400)
    }
}

extension SpanRecord.Kind {
    /// The inbound listener serves (server span); outbound and tunnels call (client span).
    init(_ direction: HTTPProxyHandler.Direction) {
        if case .inbound = direction { self = .server } else { self = .client }
    }
}
