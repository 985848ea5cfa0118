import NIOCore

/// A parsed, validated request head that still is its original bytes: start-line parts and
/// header fields are offsets into `headers.bytes`, decoded to `String` only on request.
public struct HTTPRawRequestHead: Sendable {
    public let method: HTTPRequestMethod
    public let version: HTTPProtocolVersion
    /// Header fields, and the bytes of the whole head.
    public let headers: HTTPRawHeaders
    /// Where the body ends and what happens to the connection.
    public let framing: HTTPFraming
    let methodRange: Range<Int>
    let targetRange: Range<Int>

    /// The method as sent (allocates; `method` is the cheap form).
    public var methodName: String { headers.string(methodRange) }
    /// The request-target as sent, e.g. `/pay?x=1` or `http://payments/pay`.
    public var target: String { headers.string(targetRange) }
    /// The request-target bytes, sharing the head's storage.
    public var targetBytes: ByteBufferView { headers.view(targetRange) }
    /// The size of the head on the wire, including the final empty line.
    public var byteCount: Int { headers.bytes.readableBytes }
}
