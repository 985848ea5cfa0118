import NIOCore

/// A parsed, validated response head that still is its original bytes; its framing already
/// accounts for the request it answers (HEAD, CONNECT) and the status (1xx, 204, 304, 101).
public struct HTTPRawResponseHead: Sendable {
    public let version: HTTPProtocolVersion
    public let status: Int
    /// Header fields, and the bytes of the whole head.
    public let headers: HTTPRawHeaders
    /// Where the body ends and what happens to the connection.
    public let framing: HTTPFraming
    let reasonRange: Range<Int>

    /// The reason phrase as sent (may be empty).
    public var reason: String { headers.string(reasonRange) }
    /// A 1xx other than 101: the final response is still to come on this exchange.
    public var isInformational: Bool { status >= 100 && status < 200 && status != 101 }
    /// The size of the head on the wire, including the final empty line.
    public var byteCount: Int { headers.bytes.readableBytes }
}
