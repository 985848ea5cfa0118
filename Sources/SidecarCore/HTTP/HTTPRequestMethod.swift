/// A request method, recognised from its bytes without allocating; `.other` keeps the rest.
///
/// Methods are case-sensitive (RFC 9110 §9.1): `get` is `.other`, not `.GET`.
public enum HTTPRequestMethod: UInt8, Sendable, Hashable {
    case GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH
    case other

    /// Methods that are idempotent per RFC 9110 §9.2.2 (used by retry policy).
    public var isIdempotent: Bool {
        switch self {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS, .TRACE: return true
        case .POST, .CONNECT, .PATCH, .other: return false
        }
    }

    static func classify(_ bytes: UnsafeRawBufferPointer) -> HTTPRequestMethod {
        switch bytes.count {
        case 3:
            if equals(bytes, "GET") { return .GET }
            if equals(bytes, "PUT") { return .PUT }
        case 4:
            if equals(bytes, "HEAD") { return .HEAD }
            if equals(bytes, "POST") { return .POST }
        case 5:
            if equals(bytes, "TRACE") { return .TRACE }
            if equals(bytes, "PATCH") { return .PATCH }
        case 6:
            if equals(bytes, "DELETE") { return .DELETE }
        case 7:
            if equals(bytes, "CONNECT") { return .CONNECT }
            if equals(bytes, "OPTIONS") { return .OPTIONS }
        default:
            break
        }
        return .other
    }

    private static func equals(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        let lit = literal.utf8Start
        for i in 0..<bytes.count where bytes[i] != lit[i] {
            return false
        }
        return true
    }
}
