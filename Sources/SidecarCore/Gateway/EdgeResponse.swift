import NIOCore

/// A response the gateway makes itself that is no error, so it carries no `x-mesh-error`: the
/// redirect to HTTPS, the answer to a CORS preflight. Headers are written as given (names
/// lower-case, values free of CR/LF: they come from validated config or from our own code).
public struct EdgeResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: String

    public init(status: Int, headers: [(String, String)] = [], body: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: EdgeResponse, rhs: EdgeResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
            && lhs.headers.count == rhs.headers.count && zip(lhs.headers, rhs.headers).allSatisfy { $0 == $1 }
    }

    /// The response as HTTP/1.1 bytes; `extra`: the exchange's response lines (`addedResponseHeaders`: CORS).
    func bytes(closing: Bool, requestID: String?, adding extra: [HTTPHeaderLine] = [], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 160 + body.utf8.count)
        buffer.writeString("HTTP/1.1 \(status) \(ProxyError.reasonPhrase(status))\r\n")
        for (name, value) in headers { buffer.writeString("\(name): \(value)\r\n") }
        Self.writeEnd(body: body, requestID: requestID, closing: closing, adding: extra, into: &buffer)
        return buffer
    }

    /// The end of every response the sidecar makes: the exchange's response lines (a gateway
    /// rule's CORS `access-control-allow-origin`, `x-mesh-cache`), length, request id,
    /// `connection: close` when closing, the blank line and the body.
    static func writeEnd(
        body: String, requestID: String?, closing: Bool, adding extra: [HTTPHeaderLine] = [], into buffer: inout ByteBuffer
    ) {
        for line in extra { buffer.writeString("\(line.name): \(line.value)\r\n") }
        buffer.writeString("content-length: \(body.utf8.count)\r\n")
        if let requestID { buffer.writeString("x-request-id: \(requestID)\r\n") }
        if closing { buffer.writeStaticString("connection: close\r\n") }
        buffer.writeStaticString("\r\n")
        buffer.writeString(body)
    }
}

/// What a gateway listener is: plain or TLS, and whether it only redirects to the HTTPS one
/// (whose bound port `httpsPort` reads; 443 is left out of the `Location`).
public struct GatewayListenerRole: Sendable {
    public var secure: Bool
    public var redirectToHttps: Bool
    public var httpsPort: @Sendable () -> Int?

    public init(secure: Bool, redirectToHttps: Bool = false, httpsPort: @escaping @Sendable () -> Int? = { nil }) {
        self.secure = secure
        self.redirectToHttps = redirectToHttps
        self.httpsPort = httpsPort
    }
}
