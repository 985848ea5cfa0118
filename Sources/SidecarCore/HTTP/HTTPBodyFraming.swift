/// How the body after a head is delimited (RFC 9112 §6.3): the one fact a byte-forwarding
/// proxy cannot get wrong.
public enum HTTPBodyFraming: Sendable, Hashable {
    /// No body: the next byte belongs to the next message.
    case none
    /// Exactly this many bytes.
    case contentLength(Int)
    /// Chunked transfer coding, relayed as-is up to and including the trailer section.
    case chunked
    /// A response body that ends when the upstream closes (no length, no chunked).
    case untilClose
    /// After this head the connection is an opaque tunnel both ways (101 Switching Protocols,
    /// 2xx to CONNECT).
    case tunnel
}
