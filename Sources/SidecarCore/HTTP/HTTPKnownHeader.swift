/// The header names the framing layer gives meaning to, recognised once per field at parse
/// time so that later questions ("is this hop-by-hop?", "where is Host?") cost no byte compare.
public enum HTTPKnownHeader: UInt8, Sendable, Hashable {
    case other
    case contentLength
    case transferEncoding
    case connection
    case host
    case expect
    case upgrade
    case keepAlive
    case proxyConnection
    case te
    case trailer
    case proxyAuthorization
    case proxyAuthenticate
    // Read on every request by the mesh itself: classified once while parsing, so a lookup
    // compares one byte per field instead of names (`HTTPRawHeaders.firstIndex(of:)`).
    case requestID
    case traceparent
    case meshHops
    case idempotencyKey

    /// Hop-by-hop by definition (RFC 9110 §7.6.1 plus the RFC 2616 list proxies still strip).
    /// Content-Length and Transfer-Encoding are framing, not listed here: the body is relayed
    /// with its original framing, so they travel with it (see `HTTPHeadWriter`).
    public var isHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .proxyConnection, .te, .upgrade,
            .proxyAuthorization, .proxyAuthenticate:
            return true
        case .other, .contentLength, .transferEncoding, .host, .expect, .trailer,
            .requestID, .traceparent, .meshHops, .idempotencyKey:
            return false
        }
    }

    /// Classifies a header name given as raw bytes, case-insensitively.
    static func classify(_ name: UnsafeRawBufferPointer) -> HTTPKnownHeader {
        switch name.count {
        case 2:
            return HTTPGrammar.equalsLowercase(name, "te") ? .te : .other
        case 4:
            return HTTPGrammar.equalsLowercase(name, "host") ? .host : .other
        case 6:
            return HTTPGrammar.equalsLowercase(name, "expect") ? .expect : .other
        case 7:
            if HTTPGrammar.equalsLowercase(name, "upgrade") { return .upgrade }
            if HTTPGrammar.equalsLowercase(name, "trailer") { return .trailer }
            return .other
        case 11:
            if HTTPGrammar.equalsLowercase(name, "traceparent") { return .traceparent }
            if HTTPGrammar.equalsLowercase(name, "x-mesh-hops") { return .meshHops }
            return .other
        case 12:
            return HTTPGrammar.equalsLowercase(name, "x-request-id") ? .requestID : .other
        case 15:
            return HTTPGrammar.equalsLowercase(name, "idempotency-key") ? .idempotencyKey : .other
        case 10:
            if HTTPGrammar.equalsLowercase(name, "connection") { return .connection }
            if HTTPGrammar.equalsLowercase(name, "keep-alive") { return .keepAlive }
            return .other
        case 14:
            return HTTPGrammar.equalsLowercase(name, "content-length") ? .contentLength : .other
        case 16:
            return HTTPGrammar.equalsLowercase(name, "proxy-connection") ? .proxyConnection : .other
        case 17:
            return HTTPGrammar.equalsLowercase(name, "transfer-encoding") ? .transferEncoding : .other
        case 18:
            return HTTPGrammar.equalsLowercase(name, "proxy-authenticate") ? .proxyAuthenticate : .other
        case 19:
            return HTTPGrammar.equalsLowercase(name, "proxy-authorization") ? .proxyAuthorization : .other
        default:
            return .other
        }
    }
}
