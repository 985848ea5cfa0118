import NIOCore

/// One request/response through the proxy: what was asked, where it went, how it ended.
/// Owned by the downstream connection's `HTTPProxyHandler`; lives on its event loop.
final class ProxyExchange {
    let method: HTTPRequestMethod
    let methodName: String
    let authority: String
    let path: String
    let requestID: String
    let start: NIODeadline
    /// The peer label: destination service (outbound) or calling service (inbound).
    let peer: String
    /// Intercepted: the service routed to when `Host` names none.
    var defaultDestination: String?
    var closeAfterResponse: Bool
    var requestFramer: HTTPBodyFramer
    var requestComplete = false
    var upstream: UpstreamHandler?
    var poolKey: ConnectionPool.Key?
    var rewrittenHead: ByteBuffer?
    var responseStarted = false
    var status = 0
    var bytesReceived = 0
    /// The trace this request belongs to and the span id this hop sent upstream (nil: a tunnel,
    /// or a request refused before its head was read).
    var trace: TraceContext?
    var bytesSent = 0
    var errorCause: ProxyError.Cause?
    var attempts = 0
    var triedEndpoints = TriedEndpoints()
    var route: (destination: RouteTable.Destination, rule: RouteRule)?
    var upgradeRequested = false
    /// Outbound requests may be sent again: the retry decisions and the head to resend.
    var retry: RetryStateMachine?
    var retryHead: ByteBuffer?
    /// The request body bytes forwarded so far (as received, chunk framing included), kept for
    /// a retry or a mirror while they fit in `RetryStateMachine.maxReplayBodyBytes`; nil when
    /// no copy is kept (no body, nothing wants one, or it outgrew the limit).
    var replayBody: ByteBuffer?
    /// The route timeout, the current try's `perTryTimeout`, and when request body bytes last
    /// moved; checked by the handler's one lazy deadline timer.
    var deadlines: ExchangeDeadlines
    /// When the current try's head went upstream (its response latency feeds the balancer).
    var tryStartedAt = NIODeadline.uptimeNanoseconds(0)
    /// The endpoint (and its cluster) the current try counts as one outstanding request on,
    /// until it ends (tunnels never count; every end uncounts exactly once).
    var outstandingAt: (cluster: Cluster, address: HostPort)?
    /// Moves when a try starts or is abandoned, so a late lease result of an older try is dropped.
    var tryEpoch = 0
    /// The failures that were retried, in order, and why the last failure was not (access log).
    var retryReasons: [RetryStateMachine.Failure] = []
    var retryStopped: String?
    /// A copy goes to the rule's mirror subset once the whole request is buffered.
    var mirrorPending = false
    var mirrored = false
    /// Ejected endpoints of the destination that balancing avoided (access log).
    var avoidedEjected = 0
    /// Holds one of the destination's circuit-breaker request slots until it is recorded.
    var holdsBreakerRequest = false
    /// Holds one of the breaker's `maxRetries` slots (from the first retry until the end).
    var holdsBreakerRetry = false
    /// How the caller's side carried it: the access log's `protocol`.
    var wireProtocol = WireProtocol.http1
    /// A gRPC call's status as the caller got it (`grpc-status` of the trailers, or of the
    /// sidecar's own trailers-only answer); nil for anything else.
    var grpcStatus: GRPCStatusCode?
    /// Outbound L4 tunnels have no route; their metrics handle is resolved at connect.
    var tunnelMetrics: RequestMetricsHandle?
    /// Gateway: the `direction="gateway"` series of the service the request went to.
    var gatewayMetrics: RequestMetricsHandle?
    /// Gateway: header lines added to the response going back (CORS).
    var addedResponseHeaders: [HTTPHeaderLine] = []
    /// Gateway: a chunked request body longer than this ends the exchange with 413.
    var maxBodyBytes: Int?
    /// Gateway: this request fetches for the rule's response cache (`HTTPProxyHandler+Cache.swift`).
    var cacheFill: ResponseCacheFill?

    init(
        method: HTTPRequestMethod, methodName: String, authority: String, path: String, requestID: String,
        peer: String, closeAfterResponse: Bool, framing: HTTPBodyFraming, start: NIODeadline
    ) {
        self.method = method
        self.methodName = methodName
        self.authority = authority
        self.path = path
        self.requestID = requestID
        self.peer = peer
        self.closeAfterResponse = closeAfterResponse
        // Trailers are held whole so identity fields can be removed from them (HTTPTrailerSection).
        self.requestFramer = HTTPBodyFramer(framing: framing, holdsTrailers: true)
        self.start = start
        self.deadlines = ExchangeDeadlines(bodyProgress: start)
        self.requestComplete = framing == .none
    }

    var upstreamAddress: HostPort? { poolKey?.address }

    func cancelTimers() {
        deadlines.stop()
    }

    /// Keeps a copy of body bytes just forwarded while a retry or the mirror can use it;
    /// `bytesReceived` already counts them. Drops the copy once past the replay limit.
    func keepForReplay(_ body: ByteBuffer) {
        let retryKeeps = retry?.requestBodyForwarded(totalBytes: bytesReceived) ?? false
        guard replayBody != nil else { return }
        if bytesReceived <= RetryStateMachine.maxReplayBodyBytes, retryKeeps || mirrorPending {
            replayBody!.writeImmutableBuffer(body)
        } else {
            replayBody = nil
        }
    }

    /// The whole body is buffered (or there is none): it can be replayed or mirrored.
    var bodyIsBuffered: Bool { requestComplete && (bytesReceived == 0 || replayBody != nil) }
}

/// The protocol of an exchange's downstream side, as the access log names it.
enum WireProtocol: String {
    case http1 = "HTTP/1.1"
    case http2 = "HTTP/2"
    case tcp = "TCP"
}

/// Request ids and W3C trace context made without Foundation.
enum RequestIdentifiers {
    /// 32 random lowercase hex digits (two random words), written into the string's storage.
    static func requestID(using generator: inout some RandomNumberGenerator) -> String {
        String(unsafeUninitializedCapacity: 32) { out in
            HTTPGrammar.writeHex(generator.next(), to: out.baseAddress!)
            HTTPGrammar.writeHex(generator.next(), to: out.baseAddress! + 16)
            return 32
        }
    }
}
