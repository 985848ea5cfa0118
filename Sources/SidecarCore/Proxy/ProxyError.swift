import NIOCore

/// Every response the sidecar makes itself, in one taxonomy (DESIGN.md "Errors the sidecar
/// makes"): a cause word for `x-mesh-error` and access logs, a status, and a detail line.
public struct ProxyError: Error, Sendable, Equatable {
    public enum Cause: String, Sendable, CaseIterable {
        case noRoute = "no-route"
        case noHealthyEndpoint = "no-healthy-endpoint"
        case connectFailed = "connect-failed"
        case tlsFailed = "tls-failed"
        case upstreamReset = "upstream-reset"
        case timeout = "timeout"
        case circuitOpen = "circuit-open"
        case rateLimited = "rate-limited"
        case forbidden = "forbidden"
        case badRequest = "bad-request"
        case headersTooLarge = "headers-too-large"
        case loopDetected = "loop-detected"
        case faultInjected = "fault-injected"
        /// A gateway route needs a valid JWT or API key and got none (with `WWW-Authenticate`).
        case unauthenticated = "unauthenticated"
        /// A gateway cache request with `Cache-Control: only-if-cached` found no stored answer it may have.
        case notCached = "not-cached"

        public var status: Int {
            switch self {
            case .noRoute: return 404
            case .noHealthyEndpoint, .connectFailed, .circuitOpen: return 503
            case .tlsFailed, .upstreamReset: return 502
            case .timeout, .notCached: return 504
            case .rateLimited: return 429
            case .forbidden: return 403
            case .badRequest: return 400
            case .headersTooLarge: return 431
            case .loopDetected: return 508
            case .faultInjected: return 503
            case .unauthenticated: return 401
            }
        }
    }

    public let cause: Cause
    public let status: Int
    public let detail: String
    /// Seconds for `Retry-After` (rate limits).
    public var retryAfter: Int?
    /// The challenge of a 401 `unauthenticated` (`Bearer realm="mesh"`, `ApiKey header="x-api-key"`).
    public var wwwAuthenticate: String?
    /// The TrafficPolicy's degraded answer, served instead of the error text.
    public var fallback: FallbackResponse?
    /// The status a gRPC caller gets when it is not the cause's own (a fault's `abort.grpcStatus`).
    var grpcStatus: GRPCStatusCode?

    public init(_ cause: Cause, _ detail: String, status: Int? = nil) {
        self.cause = cause
        self.status = status ?? cause.status
        self.detail = detail
    }

    /// The status the caller sees: the fallback's when one is served.
    var effectiveStatus: Int { fallback?.status ?? status }

    /// A malformed request, with the status the parser chose (400, 431, 501, 505).
    /// A TLS failure on a connection to an upstream sidecar (HTTP/1.1 and HTTP/2 alike). One
    /// that closed during the handshake is a connect failure: nothing of a request reached the
    /// upstream (it waits for the handshake), so it is as safe to send elsewhere as after a
    /// refused connect; an instance shutting down closes the connections it accepted last.
    static func upstreamTLS(_ error: TLSError) -> ProxyError {
        if error.reason == .closedDuringHandshake {
            return ProxyError(.connectFailed, "the upstream closed the connection during the TLS handshake")
        }
        return ProxyError(.tlsFailed, "mTLS to the upstream failed: \(error.reason.rawValue): \(error.detail)")
    }

    static func badRequest(_ error: HTTPParserError) -> ProxyError {
        ProxyError(error.status == 431 ? .headersTooLarge : .badRequest, error.detail, status: error.status)
    }

    /// The response body: the fallback's, else `mesh: <cause>: <detail>`.
    var body: String { fallback?.body ?? "mesh: \(cause.rawValue): \(detail)\n" }

    /// The whole response: `x-mesh-error: <cause>` and the body.
    func response(closing: Bool, requestID: String?, adding extra: [HTTPHeaderLine] = [], allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = self.body
        let status = effectiveStatus
        var buffer = allocator.buffer(capacity: 160 + body.utf8.count)
        buffer.writeString("HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\n")
        buffer.writeString("x-mesh-error: \(cause.rawValue)\r\n")
        if let fallback {
            for (name, value) in fallback.headers.sorted(by: { $0.key < $1.key })
            where !name.contains("\r") && !name.contains("\n") && !value.contains("\r") && !value.contains("\n") {
                buffer.writeString("\(name): \(value)\r\n")
            }
            if fallback.headers.keys.contains(where: { $0.lowercased() == "content-type" }) == false {
                buffer.writeStaticString("content-type: text/plain; charset=utf-8\r\n")
            }
        } else {
            buffer.writeStaticString("content-type: text/plain; charset=utf-8\r\n")
        }
        if let retryAfter { buffer.writeString("retry-after: \(retryAfter)\r\n") }
        if let wwwAuthenticate { buffer.writeString("www-authenticate: \(wwwAuthenticate)\r\n") }
        EdgeResponse.writeEnd(body: body, requestID: requestID, closing: closing, adding: extra, into: &buffer)
        return buffer
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 204: return "No Content"
        case 304: return "Not Modified"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 413: return "Content Too Large"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        case 508: return "Loop Detected"
        default: return "Error"
        }
    }
}
