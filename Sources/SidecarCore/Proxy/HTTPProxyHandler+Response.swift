import NIOCore

/// The response side of `HTTPProxyHandler` (called by `UpstreamHandler` on this loop), retries
/// and per-try timeouts, and the one place every exchange ends (access log, metrics, breaker
/// slots, keep-alive or close).
extension HTTPProxyHandler {
    // MARK: Response side (called by UpstreamHandler on this loop)

    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool) {
        upstreamResponseHead(head, final: final, wholeBody: nil)
    }

    /// Head and body go out as one buffer (one write through the pipeline, one `write(2)` or
    /// one TLS record instead of two).
    var takesWholeResponses: Bool { true }

    func upstreamResponseHead(_ head: HTTPRawResponseHead, wholeBody: ByteBuffer) {
        upstreamResponseHead(head, final: true, wholeBody: wholeBody)
    }

    private func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool, wholeBody: ByteBuffer?) {
        guard let context, let exchange else { return }
        var buffer = allocator.buffer(capacity: head.byteCount + 64 + (wholeBody?.readableBytes ?? 0))
        guard final else {
            HTTPHeadWriter().write(head, into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: nil)
            return
        }
        if let service = exchange.poolKey?.service, let address = exchange.upstreamAddress, exchange.poolKey?.tunnel == false {
            loop.recordOutcome(.status(head.status), service: service, address: address)
            let now = context.eventLoop.now
            loop.existingCluster(service)?.observeLatency(now - exchange.tryStartedAt, of: address, now: now)
        }
        exchange.deadlines.currentTry = nil
        if head.status >= 500, retryElsewhere(exchange, after: .status(head.status), context: context) { return }
        exchange.responseStarted = true
        exchange.status = head.status
        if head.framing.body == .untilClose { exchange.closeAfterResponse = true }
        exchange.cacheFill?.responseHead(head)
        if exchange.cacheFill?.isNotModified == true { return }  // answered from the refreshed entry at the end
        let changes = responseHeaderChanges(exchange)
        var extra = changes.added
        let removed = changes.removed
        let tunnel = head.framing.body == .tunnel
        if exchange.closeAfterResponse && !tunnel {
            extra.append(try! HTTPHeaderLine(name: "connection", value: "close"))
        }
        HTTPHeadWriter(removing: removed, relayUpgrade: tunnel).write(head, adding: extra, into: &buffer)
        if let wholeBody, wholeBody.readableBytes > 0 {
            exchange.bytesSent += wholeBody.readableBytes
            exchange.cacheFill?.responseBody(wholeBody)
            buffer.writeImmutableBuffer(wholeBody)
        }
        context.write(wrapOutboundOut(buffer), promise: nil)
        if tunnel {
            exchange.cancelTimers()
            phase = .tunnel
            processInput(context: context)
            flushUpstream()
            resumeReadingIfWanted()
        }
    }

    /// The lines set on (and names removed from) the response going back: the gateway's (CORS,
    /// `x-mesh-cache`) and the route rule's `responseHeaders`.
    func responseHeaderChanges(_ exchange: ProxyExchange) -> (added: [HTTPHeaderLine], removed: [String]) {
        exchange.responseHeaderChanges
    }

    func upstreamBody(_ body: ByteBuffer) {
        guard let context, let exchange else { return }
        exchange.bytesSent += body.readableBytes
        exchange.cacheFill?.responseBody(body)
        context.write(wrapOutboundOut(body), promise: nil)
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        upstreamWritable = writable
        // Time the upstream made us wait is not the caller's pause.
        if writable, let now = context?.eventLoop.now { exchange?.deadlines.bodyProgress = now }
        if writable { resumeReadingIfWanted() }
    }

    func upstreamResponseEnd(reusable: Bool) {
        guard let context, let exchange else { return }
        exchange.cancelTimers()
        endOutstanding(exchange)
        var cacheFetch: (ResponseCacheFill, ResponseCacheFill.Completion)?
        if let fill = exchange.cacheFill {
            exchange.cacheFill = nil
            cacheFetch = (fill, fill.complete(now: context.eventLoop.now))
        }
        if let upstream = exchange.upstream, let key = exchange.poolKey {
            if reusable && exchange.requestComplete && phase != .tunnel {
                loop.pool.release(upstream, key: key)
            } else {
                upstream.abandon()
            }
        }
        if let (fill, completion) = cacheFetch, cacheFetchEnded(fill, completion, exchange: exchange, context: context) { return }
        finishExchange(exchange, status: exchange.status, context: context)
    }

    func upstreamFailed(_ error: ProxyError, responseStarted: Bool) {
        guard let context, let exchange else { return }
        if !responseStarted, let service = exchange.poolKey?.service, let address = exchange.upstreamAddress {
            if error.cause == .connectFailed {
                loop.recordOutcome(.connectFailure, service: service, address: address)
                if retryElsewhere(exchange, after: .connectFailure, context: context) { return }
            } else {
                loop.recordOutcome(.reset, service: service, address: address)
                if error.cause == .upstreamReset, retryElsewhere(exchange, after: .reset, context: context) { return }
            }
        }
        exchange.cancelTimers()
        endOutstanding(exchange)
        exchange.upstream = nil
        if responseStarted || exchange.poolKey?.tunnel == true {
            exchange.errorCause = error.cause
            record(exchange, status: exchange.status)
            self.exchange = nil
            context.close(promise: nil)
        } else {
            if !exchange.requestComplete { exchange.closeAfterResponse = true }
            fail(exchange, error, context: context)
        }
    }

    /// Drops the current try and sends the request again (to another endpoint when there is
    /// one) after the backoff, when the retry policy, idempotency and the budget allow it.
    func retryElsewhere(
        _ exchange: ProxyExchange, after failure: RetryStateMachine.Failure, context: ChannelHandlerContext
    ) -> Bool {
        guard let head = exchange.retryHead, let (backoff, exclude) = loop.retryDecision(for: exchange, after: failure)
        else { return false }
        abandonTry(exchange)
        if let exclude { exchange.triedEndpoints.insert(exclude) }
        exchange.rewrittenHead = head
        phase = .connecting
        context.eventLoop.assumeIsolated().scheduleTask(in: backoff) { [self] in
            guard self.exchange === exchange, let context = self.context else { return }
            self.connectOutbound(exchange, context: context)
        }
        return true
    }

    /// Drops the try in flight: its connection is closed (never reused, the response may still
    /// come), its timer stopped, and a lease still pending for it will be discarded.
    func abandonTry(_ exchange: ProxyExchange) {
        exchange.tryEpoch &+= 1
        exchange.deadlines.currentTry = nil
        if let upstream = exchange.upstream {
            upstream.abandon()
            endOutstanding(exchange)
            exchange.upstream = nil
        }
    }

    /// The try no longer counts as outstanding on its endpoint (least-request and EWMA balancing).
    func endOutstanding(_ exchange: ProxyExchange) {
        guard let (cluster, address) = exchange.outstandingAt else { return }
        exchange.outstandingAt = nil
        cluster.tryEnded(at: address)
    }

    /// Starts the try's `perTryTimeout` clock once the whole request has gone upstream on this
    /// try (as Envoy: it bounds the wait for the response, not a slow upload), when the route
    /// sets one shorter than what is left of the route timeout (which bounds all tries itself).
    func armTryTimer(_ exchange: ProxyExchange, context: ChannelHandlerContext) {
        exchange.deadlines.currentTry = nil
        if let retry = exchange.retry, retry.policy.perTryTimeout != nil {
            let due = retry.tryDeadline(now: context.eventLoop.now)
            if due < retry.deadline { exchange.deadlines.currentTry = due }
        }
        armDeadlineTimer(context: context)
    }

    /// One scheduled task per connection watches the exchange's route and try deadlines and
    /// the request body's progress: it is scheduled only when nothing already fires by the
    /// earliest deadline, and when it fires it re-checks the deadlines of whatever exchange is
    /// current (so a request that ends in time cancels nothing and schedules nothing).
    func armDeadlineTimer(context: ChannelHandlerContext) {
        guard let exchange,
            let due = exchange.deadlines.nextDue(requestComplete: exchange.requestComplete, bodyIdle: timeouts.requestBodyIdle)
        else { return }
        if let firesAt = deadlineTimerFiresAt, firesAt <= due { return }  // it will re-check then
        deadlineTimer?.cancel()
        deadlineTimerFiresAt = due
        deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [self] in
            self.deadlineTimer = nil
            self.deadlineTimerFiresAt = nil
            self.deadlinePassed()
        }
    }

    private func deadlinePassed() {
        guard let exchange, let context else { return }
        let now = context.eventLoop.now
        switch exchange.deadlines.expiry(
            at: now, requestComplete: exchange.requestComplete, bodyIdle: timeouts.requestBodyIdle,
            readingBody: phase == .forwardingRequest && upstreamWritable, responseStarted: exchange.responseStarted)
        {
        case .route:
            requestTimedOut(exchange, after: exchange.route?.rule.timeout ?? .zero)
        case .bodyStalled:
            requestBodyStalled(exchange)
        case .bodyWaitNotTheCallers:
            exchange.deadlines.bodyProgress = now
        case .currentTry:
            tryTimedOut(exchange, after: exchange.retry?.policy.perTryTimeout ?? .zero)
        case .none:
            break
        }
        // Whatever exchange is current now (the same one retrying, or none) keeps its watch.
        armDeadlineTimer(context: context)
    }

    /// No response head within `perTryTimeout`: try again where the policy allows, else 504.
    func tryTimedOut(_ exchange: ProxyExchange, after perTry: MeshDuration) {
        guard let context else { return }
        exchange.deadlines.currentTry = nil
        if retryElsewhere(exchange, after: .perTryTimeout, context: context) { return }
        abandonTry(exchange)
        fail(exchange, ProxyError(.timeout, "no response within the per-try timeout \(perTry)"), context: context)
    }

    /// The caller stopped sending its request body (slowloris on the body): 408 when no
    /// response has started, else close; the upstream try is dropped either way.
    func requestBodyStalled(_ exchange: ProxyExchange) {
        let limit = timeouts.requestBodyIdle.nanoseconds / 1_000_000
        exchange.closeAfterResponse = true
        endOnTimer(exchange, ProxyError(.badRequest, "request body sent nothing for \(limit) ms", status: 408))
    }

    func requestTimedOut(_ exchange: ProxyExchange, after timeout: MeshDuration) {
        endOnTimer(exchange, ProxyError(.timeout, "no response within \(timeout)"))
    }

    /// A timer ended the exchange: its try is dropped, and the caller gets `error`, or, once
    /// the response has started (nothing more can be said in HTTP/1.1), a closed connection.
    private func endOnTimer(_ exchange: ProxyExchange, _ error: ProxyError) {
        guard self.exchange === exchange, let context else { return }
        exchange.cancelTimers()
        abandonTry(exchange)
        if exchange.responseStarted {
            exchange.errorCause = error.cause
            record(exchange, status: exchange.status)
            self.exchange = nil
            context.close(promise: nil)
        } else {
            if !exchange.requestComplete { exchange.closeAfterResponse = true }
            fail(exchange, error, context: context)
        }
    }

    // MARK: Endings

    /// Every finished exchange goes through here once: access log line and request metrics.
    func record(_ exchange: ProxyExchange, status: Int) {
        let handle: RequestMetricsHandle
        switch direction {
        case .outbound, .tcpOutbound:
            handle = exchange.route?.destination.requestMetrics ?? exchange.tunnelMetrics ?? loop.unroutedMetrics.outbound
        case .inbound:
            handle = inboundMetrics ?? loop.unroutedMetrics.inbound
        case .gateway:
            handle = loop.gatewayMetrics(exchange)
        }
        loop.record(exchange, status: status, accessLog: accessLog, metrics: handle, span: SpanRecord.Kind(direction))
    }

    /// Answers the current exchange with a sidecar-made error response.
    func fail(_ exchange: ProxyExchange, _ error: ProxyError, context: ChannelHandlerContext) {
        exchange.cancelTimers()
        exchange.errorCause = error.cause
        if exchange.poolKey?.tunnel == true {
            // An L4 tunnel has no HTTP to answer with: log the cause and close.
            record(exchange, status: 0)
            self.exchange = nil
            phase = .closed
            context.close(promise: nil)
            return
        }
        // A request whose body was not read cannot be followed by another on this connection;
        // one with no body, or whose body has all arrived, can (a 429 keeps the connection).
        if !exchange.requestComplete { discardArrivedBody(exchange) }
        if !exchange.requestComplete { exchange.closeAfterResponse = true }
        let response = error.response(
            closing: exchange.closeAfterResponse, requestID: exchange.requestID, adding: exchange.addedResponseHeaders, allocator: allocator)
        exchange.bytesSent += error.body.utf8.count  // body bytes, as for a relayed response
        context.write(wrapOutboundOut(response), promise: nil)
        finishExchange(exchange, status: error.effectiveStatus, context: context)
    }

    /// Reads past the rest of the request body when it is already here (a bodyless request's
    /// always is), so an answer made before forwarding need not close the connection.
    func discardArrivedBody(_ exchange: ProxyExchange) {
        var buffer = cumulation ?? ByteBuffer()
        guard let (_, complete) = try? exchange.requestFramer.readBody(from: &buffer) else { return }
        cumulation = buffer
        if complete { exchange.requestComplete = true }
    }

    func finishExchange(_ exchange: ProxyExchange, status: Int, context: ChannelHandlerContext) {
        record(exchange, status: status)
        self.exchange = nil
        if exchange.closeAfterResponse || phase == .tunnel {
            phase = .closed
            context.writeAndFlush(wrapOutboundOut(allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
            return
        }
        context.flush()
        phase = .idle
        processInput(context: context)
        if phase == .idle { armHeadTimer(context: context) }
        resumeReadingIfWanted()
    }

    /// A malformed head (or one that came too slowly): answer and close (the stream's framing
    /// can no longer be trusted). Logged and counted like every answer, with what is known:
    /// no method, path or destination (`sidecar_requests_total{peer="unknown"}` outbound).
    func respondWithoutExchange(_ error: ProxyError, context: ChannelHandlerContext) {
        phase = .closed
        let exchange = ProxyExchange(
            method: .other, methodName: "-", authority: "", path: "",
            requestID: RequestIdentifiers.requestID(using: &loop.random), peer: callerService ?? "unknown",
            closeAfterResponse: true, framing: .none, start: context.eventLoop.now)
        exchange.errorCause = error.cause
        exchange.bytesSent = error.body.utf8.count
        record(exchange, status: error.effectiveStatus)
        let response = error.response(closing: true, requestID: exchange.requestID, allocator: allocator)
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
