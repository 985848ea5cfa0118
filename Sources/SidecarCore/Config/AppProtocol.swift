/// The protocol a service's app speaks, which decides whether the sidecar proxies HTTP
/// requests or plain bytes.
public enum AppProtocol: String, Sendable, Equatable, CaseIterable {
    case http
    case http2
    /// gRPC: HTTP/2 (h2c with prior knowledge) to the app, as `http2`.
    case grpc
    case tcp

    /// The inbound speaks h2c with prior knowledge to the app.
    var speaksHTTP2: Bool { self == .http2 || self == .grpc }
}
