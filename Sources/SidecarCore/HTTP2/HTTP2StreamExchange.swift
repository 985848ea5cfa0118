import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 stream from a caller, proxied as one exchange: the HTTP/2 codec of the same
/// exchange pipeline `HTTPProxyHandler` runs for HTTP/1.1. The stream's head passes the same
/// `RequestFilters` (routing, policy, limits, fault injection, authorization; read through a
/// parsed `HTTPRawRequestHead`, so the filters cannot tell the codecs apart), the same
/// `Cluster` picks the endpoint and decides retries, and the exchange ends in the same
/// `LoopContext.record`. Upstream it opens a stream on a pooled multiplexed connection
/// (`HTTP2ConnectionPool`): to a peer sidecar over mTLS `h2` (outbound), or to the app (inbound:
/// h2c when it speaks HTTP/2 or gRPC, else translated to HTTP/1.1 by `HTTP1AppStream`). A
/// gateway's stream passes the gateway's filters and may be answered at the edge (cache,
/// aggregate: `HTTP2StreamExchange+Gateway.swift`), else goes into the mesh as outbound.
///
/// A plain object, not a channel: its downstream (`HTTP2DownstreamConnection`, one per caller
/// connection in NIOHTTP2's frame mode, or `HTTP1ToHTTP2Adapter` for an HTTP/1.1 caller) hands it
/// the stream's frames and writes what it answers with the stream's id.
///
/// Flow control both ways: the stream's receive window is given back only while the upstream
/// stream takes more (`wantsDownstreamFrames`), and the upstream's reads are held while the
/// caller cannot take more; so a slow reader stops its sender and nothing buffers without bound.
///
/// gRPC (`content-type: application/grpc…`): trailers relayed both ways; the sidecar's own
/// errors answered trailers-only with `grpc-status`/`grpc-message`; `grpc-timeout` bounds the
/// route timeout; a try is retried only before any response message reached the caller.
final class HTTP2StreamExchange: HTTP2UpstreamOwner, HTTP2DeadlineOwner {
    /// Which listener's stream this is.
    enum Side {
        /// The app's outbound port (h2c): route by `:authority` to a peer sidecar.
        case outbound
        /// The inbound (mTLS `h2` from a peer sidecar): authorize the verified caller, then the app.
        case inbound(app: HostPort, appSpeaksHTTP2: Bool, caller: String?, metrics: RequestMetricsHandle)
        /// The gateway's listener (`h2` over its HTTPS, h2c on its plain one) from `client`'s IP
        /// address: the gateway's filters, then a mesh service as the outbound would call it.
        case gateway(GatewayListenerRole, client: String?)
    }

    enum Phase {
        case awaitingHeaders
        /// The filters run (or a fault delay holds it).
        case admitting
        case connecting
        case forwarding
        case done
    }

    let side: Side
    let loop: LoopContext
    let accessLog: AccessLog
    /// Outbound, intercepted: the original destination's service, routed to when `:authority`
    /// names none (as `HTTPProxyHandler.defaultDestination` for HTTP/1.1).
    let defaultDestination: String?
    let streamID: HTTP2StreamID
    /// Strong: the downstream's table holds this exchange until the stream closes.
    let downstream: any HTTP2Downstream
    let eventLoop: EventLoop
    let allocator: ByteBufferAllocator
    /// Got frames in the connection's current read batch.
    var touched = false
    var phase = Phase.awaitingHeaders
    private(set) var exchange: ProxyExchange?
    private var isGRPC = false
    /// The head the next hop gets (rewritten by the filters).
    private var upstreamHead = HPACKHeaders()
    /// Its summary when every field of it was checked already (`HTTP2RequestPart.headers`).
    private var upstreamHeadChecked: HTTP2HeaderValidation.Summary?
    private var upstream: (any HTTP2Upstream)?
    /// Request parts not yet sent on the current try (arrived before its stream opened).
    private var pending: [HTTP2RequestPart] = []
    /// Every request part so far, kept for a retry while the body fits the replay limit (nil: not kept).
    private var replay: [HTTP2RequestPart]?
    private var replayBodyBytes = 0
    private var upstreamNeedsFlush = false
    /// The response head went to the caller (nothing can be retried or answered after it).
    var responseStarted = false
    /// The connection's clock (one timer for all its streams); a stream without one (a test)
    /// gets its own.
    private let clock: HTTP2StreamClock
    private var routeDeadline: NIODeadline?
    private var tryDeadline: NIODeadline?

    init(
        streamID: HTTP2StreamID, downstream: any HTTP2Downstream, eventLoop: EventLoop, allocator: ByteBufferAllocator,
        side: Side, loop: LoopContext, accessLog: AccessLog, defaultDestination: String? = nil, clock: HTTP2StreamClock? = nil
    ) {
        self.streamID = streamID
        self.downstream = downstream
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.side = side
        self.loop = loop
        self.accessLog = accessLog
        self.defaultDestination = defaultDestination
        self.clock = clock ?? HTTP2StreamClock(eventLoop: eventLoop)
    }

    private var direction: TrafficDirection { side.direction }

    // MARK: Downstream events (called by the downstream on this loop)

    /// A frame of this stream from the caller.
    func received(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers):
            if phase == .awaitingHeaders {
                begin(headers.headers, endStream: headers.endStream)
            } else if let exchange, !exchange.requestComplete {
                // Request trailers: no caller may set the mesh's identity headers there either.
                exchange.requestComplete = true
                relay(.trailers(HTTP2Headers.removing(HTTPProxyHandler.identityHeaders, from: headers.headers)))
            }
        case .data(let data):
            guard let exchange, !exchange.requestComplete, case .byteBuffer(let buffer) = data.data else { return }
            exchange.bytesReceived += buffer.readableBytes
            if data.endStream { exchange.requestComplete = true }
            if let limit = exchange.maxBodyBytes, exchange.bytesReceived > limit {
                fail(exchange, ProxyError(.badRequest, "the request body is over \(limit) bytes", status: 413))
                return
            }
            relay(.data(buffer, endStream: data.endStream))
        case .rstStream:
            downstreamClosed()
        default:
            break
        }
    }

    /// The end of the downstream's read batch: what it relayed goes out in one flush.
    func downstreamReadComplete() {
        flushUpstream()
    }

    /// Take the caller's frames only while they have somewhere to go: before the head, and
    /// while the upstream stream takes more. Held otherwise (its window fills; it stops).
    var wantsDownstreamFrames: Bool {
        switch phase {
        case .awaitingHeaders, .done: return true
        case .admitting, .connecting: return false
        case .forwarding: return upstream?.isWritable ?? false
        }
    }

    private func resumeReadingIfWanted() {
        guard wantsDownstreamFrames else { return }
        downstream.readsResumed(streamID)
    }

    /// The caller can (or cannot) take more of this stream's response now.
    func downstreamWritabilityChanged(_ writable: Bool) {
        upstream?.setReadsPaused(!writable)
    }

    /// The caller reset the stream, broke the protocol on it, or the connection went away
    /// before the exchange ended: the upstream try is dropped and the exchange recorded as
    /// aborted (status 0).
    func downstreamClosed() {
        guard let exchange, phase != .done else { return }
        if isGRPC, exchange.grpcStatus == nil { exchange.grpcStatus = .cancelled }
        abandonTry(exchange)
        end(exchange, status: responseStarted ? exchange.status : 0)
    }

    // MARK: Request side

    private func begin(_ headers: HPACKHeaders, endStream: Bool) {
        phase = .admitting
        let parsed = Self.parseHead(headers, allocator: allocator)
        let (head, target) = (parsed.head, parsed.target)
        isGRPC = GRPC.isGRPC(contentType: parsed.contentType)
        let authority = parsed.authority
        let peer: String
        switch side {
        case .outbound: peer = loop.table.outboundPeer(authority: authority, defaultDestination: defaultDestination)
        case .inbound(_, _, let caller, _): peer = caller ?? "unknown"
        case .gateway(_, let client): peer = client ?? "unknown"
        }
        let requestID = head?.headers.firstValue(named: "x-request-id") ?? RequestIdentifiers.requestID(using: &loop.random)
        let exchange = ProxyExchange(
            method: head?.method ?? .other, methodName: head?.methodName ?? "-", authority: authority,
            path: target?.path ?? String(parsed.path.prefix { $0 != "?" }), requestID: requestID, peer: peer,
            closeAfterResponse: false, framing: .none, start: eventLoop.now)
        exchange.wireProtocol = .http2
        exchange.defaultDestination = defaultDestination
        exchange.requestComplete = endStream
        self.exchange = exchange
        guard let head, let target else {
            fail(exchange, parsed.error ?? ProxyError(.badRequest, "invalid request head"))
            return
        }
        if head.method == .CONNECT {
            fail(exchange, ProxyError(.badRequest, "CONNECT is not proxied over HTTP/2"))
            return
        }
        let caller: String?
        if case .inbound(_, _, let verified, _) = side { caller = verified } else { caller = nil }
        var request = AdmittedRequest(head: head, target: target, exchange: exchange, caller: caller)
        request.setHopHeaders(inbound: direction == .inbound, random: &loop.random)
        if let timeout = parsed.grpcTimeout.flatMap(GRPC.timeout) {
            routeDeadline = exchange.start + timeout
        }
        let filters: ArraySlice<any RequestFilter>
        switch side {
        case .outbound: filters = RequestFilters.outbound[...]
        case .inbound: filters = RequestFilters.inbound[...]
        case .gateway(let role, let client):
            request.listener = role
            request.client = client
            filters = RequestFilters.gateway[...]
        }
        admit(request, through: filters, received: headers)
    }

    /// What an exchange reads of its stream's head, from one pass over the fields.
    struct StreamHead {
        var method = ""
        var path = ""
        /// `:authority`, else the first `host`, else empty.
        var authority = ""
        var contentType: String?
        var grpcTimeout: String?
        /// The head as the HTTP/1.1 head the filters read, with its target; or why not.
        var head: HTTPRawRequestHead?
        var target: HTTPRequestTarget?
        var error: ProxyError?
    }

    /// The stream's head as the HTTP/1.1 head the filters read (method, target, `host`, fields),
    /// parsed by the same parser, so every head-level check holds for both codecs. One pass over
    /// the fields: pseudo-headers come first (`HTTP2HeaderValidation`), so the start line and
    /// `host` are written at the first regular field.
    static func parseHead(_ headers: HPACKHeaders, allocator: ByteBufferAllocator) -> StreamHead {
        var result = StreamHead()
        var authority: String?
        var startWritten = false
        var hostWritten = false
        var buffer = allocator.buffer(capacity: 512)
        func writeStart() {
            startWritten = true
            Self.writeLine(result.method, " ", result.path, " HTTP/1.1\r\n", to: &buffer)
            if let authority {
                result.authority = authority
                writeField("host", authority)
                hostWritten = true
            }
        }
        func writeField(_ name: String, _ value: String) {
            Self.writeLine(name, ": ", value, "\r\n", to: &buffer)
        }
        for (name, value, _) in headers {
            switch name.utf8.first {
            case UInt8(ascii: ":"):
                switch name {
                case ":method": result.method = value
                case ":path": result.path = value
                case ":authority": authority = value
                default: break
                }
                continue
            case UInt8(ascii: "h") where name == "host":
                if !startWritten { writeStart() }
                if !hostWritten {
                    result.authority = value
                    writeField(name, value)
                    hostWritten = true
                }
                continue
            case UInt8(ascii: "c") where result.contentType == nil && name == "content-type":
                result.contentType = value
            case UInt8(ascii: "g") where result.grpcTimeout == nil && name == "grpc-timeout":
                result.grpcTimeout = value
            default:
                break
            }
            if !startWritten { writeStart() }
            writeField(name, value)
        }
        if !startWritten { writeStart() }
        if !hostWritten { buffer.writeStaticString("host: \r\n") }
        buffer.writeStaticString("\r\n")
        var parser = HTTPHeadParser()
        do {
            guard let head = try parser.parseRequest(&buffer) else {
                result.error = ProxyError(.badRequest, "invalid request head")
                return result
            }
            result.head = head
        } catch {
            result.error = ProxyError.badRequest(error)
            return result
        }
        do {
            result.target = try HTTPRequestTarget(parsing: result.path)
        } catch {
            result.error = ProxyError(.badRequest, error.description)
        }
        return result
    }

    /// `first`, `separator`, `second`, `end` in one write: ByteBuffer checks its storage on
    /// every write, and the head has a line per field.
    private static func writeLine(
        _ first: String, _ separator: StaticString, _ second: String, _ end: StaticString, to buffer: inout ByteBuffer
    ) {
        var first = first
        var second = second
        first.withUTF8 { first in
            second.withUTF8 { second in
                let count = first.count + separator.utf8CodeUnitCount + second.count + end.utf8CodeUnitCount
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
                    var at = 0
                    func put(_ part: UnsafeRawBufferPointer) {
                        UnsafeMutableRawBufferPointer(rebasing: out[at..<at + part.count]).copyMemory(from: part)
                        at += part.count
                    }
                    put(UnsafeRawBufferPointer(first))
                    put(UnsafeRawBufferPointer(start: separator.utf8Start, count: separator.utf8CodeUnitCount))
                    put(UnsafeRawBufferPointer(second))
                    put(UnsafeRawBufferPointer(start: end.utf8Start, count: end.utf8CodeUnitCount))
                    return count
                }
            }
        }
    }

    func admit(_ request: AdmittedRequest, through filters: ArraySlice<any RequestFilter>, received: HPACKHeaders) {
        let exchange = request.exchange
        switch RequestFilters.run(request, through: filters, loop: loop, now: eventLoop.now) {
        case .rejected(let error):
            fail(exchange, error)
        case .answered(let response):
            // Edge answers (CORS preflight, redirect) come from the gateway's filters.
            answer(exchange, response)
        case .delayed(let delay, let request, let remaining):
            if let route = exchange.route { limitRouteDeadline(exchange.start + route.rule.timeout.timeAmount) }
            armTimer()
            eventLoop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
                guard let self, self.exchange === exchange, self.phase == .admitting else { return }
                self.admit(request, through: remaining, received: received)
            }
        case .admitted(let request):
            if case .gateway = side {
                if let route = exchange.route { limitRouteDeadline(exchange.start + route.rule.timeout.timeAmount) }
                if answeredAtEdge(request, received: received) { return }
            }
            forward(request, received: received)
        }
    }

    func limitRouteDeadline(_ deadline: NIODeadline) {
        routeDeadline = min(routeDeadline ?? deadline, deadline)
    }

    func forward(_ request: AdmittedRequest, received: HPACKHeaders) {
        let exchange = request.exchange
        let path = request.upstreamTarget ?? (request.target.isRewritten ? request.target.originForm : nil)
        upstreamHead = HTTP2Headers.request(received, removing: request.removedHeaders, adding: request.addedHeaders, path: path)
        if downstream.checksRequestBlocks, HTTP2HeaderValidation.areValidAdditions(path: path, added: request.addedHeaders) {
            upstreamHeadChecked = HTTP2HeaderValidation.Summary(isHEAD: request.head.method == .HEAD)
        }
        switch side {
        case .outbound, .gateway:
            guard let (destination, rule, _) = request.route else { return }
            limitRouteDeadline(exchange.start + rule.timeout.timeAmount)
            let retry = RetryStateMachine(
                policy: rule.retries,
                request: .init(
                    method: request.head.method, hasIdempotencyKey: request.head.headers.contains("idempotency-key"),
                    contentLength: nil, isGRPC: isGRPC),
                deadline: routeDeadline ?? exchange.start + rule.timeout.timeAmount)
            exchange.retry = retry
            exchange.mirrorPending = MirrorDecision.shouldMirror(rule.mirror, using: &loop.random)
            if rule.retries.attempts > 1 || exchange.mirrorPending {
                replay = pending
                replayBodyBytes = pending.reduce(0) { $0 + $1.bodyBytes }
                if replayBodyBytes > RetryStateMachine.maxReplayBodyBytes { replay = nil }
            }
            loop.cluster(destination).retryBudgetRequestStarted(now: loop.now)
            mirrorIfBuffered(exchange)
            armTimer()
            connectOutbound(exchange)
        case .inbound(let app, let appSpeaksHTTP2, _, _):
            armTimer()
            if appSpeaksHTTP2 {
                openStream(exchange, key: .init(address: app, service: nil), connectTimeout: .seconds(5))
            } else {
                openHTTP1App(exchange, app: app)
            }
        }
    }

    /// Keeps `part` for a replay while the body fits, then sends it on the open stream (or
    /// holds it until the stream opens).
    private func relay(_ part: HTTP2RequestPart) {
        guard let exchange else { return }
        if replay != nil {
            replayBodyBytes += part.bodyBytes
            if replayBodyBytes > RetryStateMachine.maxReplayBodyBytes {
                replay = nil
            } else {
                replay!.append(part)
            }
        }
        exchange.retry?.requestBodyForwarded(totalBytes: exchange.bytesReceived)
        if phase == .forwarding, let upstream {
            upstream.send(part)
            upstreamNeedsFlush = true
        } else {
            pending.append(part)
        }
        if exchange.requestComplete { mirrorIfBuffered(exchange) }
    }

    private func flushUpstream() {
        guard upstreamNeedsFlush else { return }
        upstreamNeedsFlush = false
        upstream?.flush()
    }

    private func connectOutbound(_ exchange: ProxyExchange) {
        guard let (destination, rule) = exchange.route else { return }
        guard let endpoint = loop.pickEndpoint(destination, rule: rule, excluding: exchange.triedEndpoints) else {
            var error = ProxyError(.noHealthyEndpoint, "service \(destination.service) has no healthy endpoint")
            error.fallback = destination.policy.fallback
            fail(exchange, error)
            return
        }
        exchange.triedEndpoints.insert(endpoint.address)
        exchange.avoidedEjected = max(exchange.avoidedEjected, loop.ejectedEndpoints(destination.service))
        openStream(
            exchange, key: .init(address: endpoint.address, service: destination.service),
            connectTimeout: destination.policy.connectTimeout.timeAmount)
    }

    /// Starts a try: a stream on a pooled connection to `key` (a new connection when none has room).
    private func openStream(_ exchange: ProxyExchange, key: ConnectionPool.Key, connectTimeout: TimeAmount) {
        phase = .connecting
        exchange.poolKey = key
        exchange.attempts += 1
        exchange.tryEpoch &+= 1
        if let stream = loop.http2Pool.openStreamNow(key, owner: self) {
            streamOpened(stream, exchange: exchange)
            return
        }
        let epoch = exchange.tryEpoch
        loop.http2Pool.openStream(key, connectTimeout: connectTimeout, owner: self).assumeIsolated().whenComplete { [weak self] result in
            guard let self, self.exchange === exchange, exchange.tryEpoch == epoch, self.phase == .connecting else {
                if case .success(let stream) = result { stream.cancel() }
                return
            }
            switch result {
            case .success(let stream):
                self.streamOpened(stream, exchange: exchange)
            case .failure(let error):
                self.connectFailed(error as? ProxyError ?? ProxyError(.connectFailed, "\(error)"), exchange: exchange)
            }
        }
    }

    /// Inbound to an HTTP/1.1 app: the stream is translated on a pooled HTTP/1.1 connection.
    private func openHTTP1App(_ exchange: ProxyExchange, app: HostPort) {
        phase = .connecting
        exchange.poolKey = .init(address: app, service: nil)
        exchange.attempts += 1
        let upstream = HTTP1AppStream(owner: self, loop: loop)
        upstream.connect(to: app, connectTimeout: .seconds(5)).assumeIsolated().whenComplete { [weak self] result in
            guard let self, self.exchange === exchange, self.phase == .connecting else {
                upstream.cancel()
                return
            }
            switch result {
            case .success: self.streamOpened(upstream, exchange: exchange)
            case .failure(let error): self.connectFailed(error as? ProxyError ?? ProxyError(.connectFailed, "\(error)"), exchange: exchange)
            }
        }
    }

    private func connectFailed(_ error: ProxyError, exchange: ProxyExchange) {
        if let service = exchange.poolKey?.service, let address = exchange.upstreamAddress, error.cause == .connectFailed {
            loop.recordOutcome(.connectFailure, service: service, address: address)
        }
        // A failed connect never reached the upstream: always safe to try another endpoint.
        if error.cause == .connectFailed, let route = exchange.route,
            route.destination.retriesConnectFailure(rule: route.rule, attempts: exchange.attempts, tried: exchange.triedEndpoints)
        {
            exchange.retryReasons.append(.connectFailure)
            connectOutbound(exchange)
        } else {
            fail(exchange, error)
        }
    }

    private func streamOpened(_ upstream: any HTTP2Upstream, exchange: ProxyExchange) {
        self.upstream = upstream
        if let address = exchange.upstreamAddress, let destination = exchange.route?.destination {
            let cluster = loop.cluster(destination)
            cluster.tryStarted(at: address)
            exchange.outstandingAt = (cluster, address)
        }
        exchange.tryStartedAt = eventLoop.now
        if let retry = exchange.retry, retry.policy.perTryTimeout != nil {
            tryDeadline = retry.tryDeadline(now: eventLoop.now)
        }
        let parts = pending
        pending = []
        upstream.send(.headers(upstreamHead, endStream: exchange.requestComplete && parts.isEmpty, checked: upstreamHeadChecked))
        for part in parts { upstream.send(part) }
        upstream.flush()
        upstream.setReadsPaused(!downstream.isWritable(streamID))
        phase = .forwarding
        armTimer()
        resumeReadingIfWanted()
    }

    // MARK: Response side (called by the upstream on this loop)

    func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) {
        guard let exchange else { return }
        let status = headers.first(name: ":status").flatMap { Int($0) } ?? 502
        let grpcStatus = endStream ? headers.first(name: "grpc-status").flatMap(GRPCStatusCode.init(headerValue:)) : nil
        if let service = exchange.poolKey?.service, let address = exchange.upstreamAddress {
            // A gRPC UNAVAILABLE counts as a gateway error for outlier detection.
            loop.recordOutcome(.status(grpcStatus == .unavailable ? 503 : status), service: service, address: address)
            loop.existingCluster(service)?.observeLatency(
                eventLoop.now - exchange.tryStartedAt, of: address, now: eventLoop.now)
        }
        tryDeadline = nil
        if status >= 500, retryElsewhere(exchange, after: .status(status)) { return }
        if let grpcStatus, grpcStatus != .ok, retryElsewhere(exchange, after: .grpcStatus(grpcStatus.rawValue)) { return }
        responseStarted = true
        exchange.status = status
        if let grpcStatus { exchange.grpcStatus = grpcStatus }
        var head = headers
        var checked = upstream?.checksResponseBlocks ?? false
        if let rule = exchange.route?.rule, !rule.responseHeaders.remove.isEmpty || !rule.responseHeaders.set.isEmpty
            || !exchange.addedResponseHeaders.isEmpty
        {
            let changes = exchange.responseHeaderChanges
            head = HTTP2Headers.response(headers, removing: changes.removed, adding: changes.added)
            checked = false
        }
        if let fill = exchange.cacheFill {
            fill.responseHead(http2: headers, endStream: endStream)
            if fill.isNotModified { return endStream ? finish(exchange) : () }  // answered from the refreshed entry at the end
        }
        write(.headers(.init(headers: head, endStream: endStream)), checked: checked)
        if endStream { finish(exchange) }
    }

    func upstreamData(_ data: ByteBuffer, endStream: Bool) {
        guard let exchange else { return }
        if exchange.cacheFill?.isNotModified == true { return endStream ? finish(exchange) : () }  // a 304 has no body to relay
        exchange.bytesSent += data.readableBytes
        exchange.cacheFill?.responseData(data)
        write(.data(.init(data: .byteBuffer(data), endStream: endStream)))
        if endStream {
            finish(exchange)
        } else if !downstream.isWritable(streamID) {
            upstream?.setReadsPaused(true)
        }
    }

    func upstreamTrailers(_ trailers: HPACKHeaders) {
        guard let exchange else { return }
        exchange.grpcStatus = trailers.first(name: "grpc-status").flatMap(GRPCStatusCode.init(headerValue:))
        write(.headers(.init(headers: trailers, endStream: true)), checked: upstream?.checksResponseBlocks ?? false)
        finish(exchange)
    }

    func upstreamReadComplete() {
        downstream.flush()
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        if writable { resumeReadingIfWanted() }
    }

    func upstreamFailed(_ failure: HTTP2StreamFailure) {
        guard let exchange, phase != .done else { return }
        upstream = nil
        endOutstanding(exchange)
        let error: ProxyError
        let retryFailure: RetryStateMachine.Failure
        switch failure {
        case .refused:
            error = ProxyError(.upstreamReset, "the upstream refused the stream")
            retryFailure = .refusedStream
        case .reset(let detail):
            error = ProxyError(.upstreamReset, detail)
            retryFailure = .reset
        case .connection(let cause):
            error = cause
            retryFailure = cause.cause == .connectFailed ? .connectFailure : .reset
        }
        if !responseStarted {
            if let service = exchange.poolKey?.service, let address = exchange.upstreamAddress, retryFailure != .refusedStream {
                loop.recordOutcome(.reset, service: service, address: address)
            }
            if retryElsewhere(exchange, after: retryFailure) { return }
        }
        fail(exchange, error)
    }

    // MARK: Retries and timers

    /// Drops the current try and starts another after the backoff, when the route's policy,
    /// the budget and the breaker allow it and nothing reached the caller yet.
    private func retryElsewhere(_ exchange: ProxyExchange, after failure: RetryStateMachine.Failure) -> Bool {
        guard !responseStarted, exchange.retry != nil else { return false }
        // Parts already sent on this try can only be sent again from the replay copy.
        let sentParts = phase == .forwarding || failure != .connectFailure
        if sentParts && replay == nil { return false }
        guard let (backoff, exclude) = loop.retryDecision(for: exchange, after: failure) else { return false }
        abandonTry(exchange)
        if let exclude { exchange.triedEndpoints.insert(exclude) }
        if sentParts, let replay { pending = replay }
        phase = .connecting
        eventLoop.assumeIsolated().scheduleTask(in: backoff) { [weak self] in
            guard let self, self.exchange === exchange, self.phase == .connecting else { return }
            self.connectOutbound(exchange)
        }
        return true
    }

    /// Drops the try in flight: its stream is reset, and a stream still opening for it is
    /// closed when it comes.
    private func abandonTry(_ exchange: ProxyExchange) {
        exchange.tryEpoch &+= 1
        tryDeadline = nil
        upstream?.cancel()
        upstream = nil
        endOutstanding(exchange)
    }

    private func endOutstanding(_ exchange: ProxyExchange) {
        guard let (cluster, address) = exchange.outstandingAt else { return }
        exchange.outstandingAt = nil
        cluster.tryEnded(at: address)
    }

    /// One deadline on the connection's clock over the route deadline (the route timeout,
    /// bounded by `grpc-timeout`) and the current try's `perTryTimeout`.
    func armTimer() {
        guard phase != .done else { return }
        let due: NIODeadline
        switch (routeDeadline, tryDeadline) {
        case (nil, nil): return
        case (let route?, nil): due = route
        case (nil, let attempt?): due = attempt
        case (let route?, let attempt?): due = min(route, attempt)
        }
        clock.schedule(self, at: due)
    }

    func deadlinePassed() {
        guard let exchange, phase != .done else { return }
        let now = eventLoop.now
        if let route = routeDeadline, now >= route {
            let timeout = exchange.route?.rule.timeout.description ?? "the call's grpc-timeout"
            abandonTry(exchange)
            fail(exchange, ProxyError(.timeout, "no response within \(timeout)"))
            return
        }
        if let attempt = tryDeadline, now >= attempt, !responseStarted {
            tryDeadline = nil
            if retryElsewhere(exchange, after: .perTryTimeout) { return }
            abandonTry(exchange)
            let perTry = exchange.retry?.policy.perTryTimeout?.description ?? "?"
            fail(exchange, ProxyError(.timeout, "no response within the per-try timeout \(perTry)"))
            return
        }
        armTimer()
    }

    // MARK: Mirroring

    /// Sends the fire-and-forget copy to the rule's mirror subset once the whole request is
    /// kept; a request whose body outgrew the replay copy is not mirrored, only counted.
    private func mirrorIfBuffered(_ exchange: ProxyExchange) {
        guard exchange.mirrorPending, exchange.requestComplete, let (destination, rule) = exchange.route,
            let mirror = rule.mirror
        else { return }
        exchange.mirrorPending = false
        guard let parts = replay else {
            loop.metrics.mirrorRequests(peer: destination.service, result: .skipped).increment()
            return
        }
        exchange.mirrored = HTTP2Mirror.send(
            head: upstreamHead, parts: parts, subset: mirror.subset, destination: destination,
            timeout: rule.timeout.timeAmount, loop: loop)
    }

    // MARK: Endings

    /// A frame of this stream to the caller (flushed by the caller of this).
    func write(_ payload: HTTP2Frame.FramePayload, checked: Bool = false) {
        downstream.write(payload, on: streamID, checked: checked)
    }

    /// Answers with a sidecar-made error: trailers-only `grpc-status` for a gRPC call, else
    /// the status, `x-mesh-error` and the `mesh: <cause>: <detail>` body. After the response
    /// started nothing more can be said: a gRPC call gets UNAVAILABLE trailers, others a reset.
    func fail(_ exchange: ProxyExchange, _ error: ProxyError) {
        guard phase != .done else { return }
        exchange.errorCause = error.cause
        abandonTry(exchange)
        if responseStarted {
            if isGRPC {
                exchange.grpcStatus = GRPCStatusCode(error.cause)
                write(.headers(.init(headers: Self.grpcTrailers(error, requestID: nil), endStream: true)))
                downstream.flush()
                end(exchange, status: exchange.status)
            } else {
                end(exchange, status: exchange.status)
                write(.rstStream(.cancel))  // the caller sees the response cut short
                downstream.flush()
            }
            return
        }
        let status: Int
        if isGRPC {
            let code = error.grpcStatus ?? GRPCStatusCode(error.cause)
            exchange.grpcStatus = code
            status = 200
            // Trailers-only: `:status` first, then the status fields.
            var headers = HPACKHeaders([(":status", "200"), ("content-type", "application/grpc")])
            headers.add(contentsOf: Self.grpcTrailers(error, requestID: exchange.requestID, code: code))
            write(.headers(.init(headers: headers, endStream: true)))
            downstream.flush()
        } else {
            status = error.effectiveStatus
            let body = error.body
            var headers = HPACKHeaders([(":status", String(status)), ("x-mesh-error", error.cause.rawValue)])
            var hasContentType = false
            if let fallback = error.fallback {
                for (name, value) in fallback.headers.sorted(by: { $0.key < $1.key }) {
                    let name = name.lowercased()
                    guard (try? HTTPHeaderLine(name: name, value: value)) != nil, !Self.connectionSpecific.contains(name) else { continue }
                    if name == "content-type" { hasContentType = true }
                    headers.add(name: name, value: value)
                }
            }
            if !hasContentType { headers.add(name: "content-type", value: "text/plain; charset=utf-8") }
            if let retryAfter = error.retryAfter { headers.add(name: "retry-after", value: String(retryAfter)) }
            if let challenge = error.wwwAuthenticate { headers.add(name: "www-authenticate", value: challenge) }
            for line in exchange.addedResponseHeaders { headers.add(name: line.name, value: line.value) }  // a gateway rule's CORS
            headers.add(name: "content-length", value: String(body.utf8.count))
            headers.add(name: "x-request-id", value: exchange.requestID)
            var buffer = allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            exchange.bytesSent += body.utf8.count
            write(.headers(.init(headers: headers, endStream: false)))
            write(.data(.init(data: .byteBuffer(buffer), endStream: true)))
            downstream.flush()
        }
        responseStarted = true
        end(exchange, status: status)
        stopCallerSending(exchange)
    }

    /// An answer complete before the request ended: RST_STREAM(NO_ERROR) tells the caller to
    /// stop sending the rest and keeps the answer (RFC 9113 §8.1; CANCEL would void it). Sent
    /// once the read batch's flush took the answer out: NIOHTTP2 drops a stream's frames still
    /// buffered when it is reset (curl then saw an empty reply).
    func stopCallerSending(_ exchange: ProxyExchange) {
        guard !exchange.requestComplete else { return }
        eventLoop.assumeIsolated().execute { [weak self] in
            guard let self else { return }
            self.write(.rstStream(.noError))
            self.downstream.flush()
        }
    }

    /// Headers HTTP/2 forbids (RFC 9113 §8.2.2), never copied from a fallback response.
    private static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]

    /// `grpc-status`, `grpc-message` (`mesh: <cause>: <detail>`, percent-encoded) and `x-mesh-error`.
    static func grpcTrailers(_ error: ProxyError, requestID: String?, code: GRPCStatusCode? = nil) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: "grpc-status", value: String((code ?? error.grpcStatus ?? GRPCStatusCode(error.cause)).rawValue))
        headers.add(name: "grpc-message", value: GRPC.percentEncoded("mesh: \(error.cause.rawValue): \(error.detail)"))
        headers.add(name: "x-mesh-error", value: error.cause.rawValue)
        if let requestID { headers.add(name: "x-request-id", value: requestID) }
        return headers
    }

    private func finish(_ exchange: ProxyExchange) {
        if let fill = exchange.cacheFill {  // the whole response came: store it
            exchange.cacheFill = nil
            fill.responseDataEnded()
            switch fill.complete(now: eventLoop.now) {
            case .relayed: break
            case .revalidated(let entry):  // a revalidation's 304
                return answerRevalidated(entry, requestHeaders: fill.requestHeaders, exchange: exchange)
            case .refetch:  // a 304 that did not select the entry (not relayed): the request goes again, as a miss
                upstream = nil
                tryDeadline = nil
                endOutstanding(exchange)
                responseStarted = false
                exchange.status = 0
                exchange.cacheFill = fill.refetch()
                fill.resend?()
                return
            }
        }
        end(exchange, status: exchange.status)
        stopCallerSending(exchange)
    }

    /// Every exchange of this stream ends here once: metrics, access log, breaker slots.
    func end(_ exchange: ProxyExchange, status: Int) {
        guard phase != .done else { return }
        phase = .done
        clock.cancel(self)
        endOutstanding(exchange)
        let handle: RequestMetricsHandle
        switch side {
        case .outbound: handle = exchange.route?.destination.requestMetrics ?? loop.unroutedMetrics.outbound
        case .inbound(_, _, _, let metrics): handle = metrics
        case .gateway: handle = loop.gatewayMetrics(exchange)
        }
        loop.record(exchange, status: status, accessLog: accessLog, metrics: handle, span: direction == .inbound ? .server : .client)
        if isGRPC, let code = exchange.grpcStatus {
            loop.grpcResponses(direction, peer: exchange.peer, status: code).increment()
        }
        self.exchange = nil
        pending = []
        replay = nil
        // The answer's last frame goes out now: an upstream that hands its connection to the
        // next exchange at the response's end (HTTP/1.1 to the app) reports no read completion to this one.
        downstream.flush()
        resumeReadingIfWanted()
    }
}
