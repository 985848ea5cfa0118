/// The protocol a service's app speaks, which decides whether the sidecar proxies HTTP
/// requests or plain bytes.
public enum AppProtocol: String, Sendable, Equatable, CaseIterable {
    case http
    case http2
    case tcp
}
