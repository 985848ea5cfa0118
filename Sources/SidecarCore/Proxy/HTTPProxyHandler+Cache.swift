import NIOCore

/// The gateway's response cache on an HTTP/1.1 connection: `GatewayCacheLookup` decides (a
/// hit, a wait behind a fetch in flight, a revalidation, a 504 for `only-if-cached`, or
/// upstream, filling the cache when it leads); this file carries the decisions out as HTTP/1.1
/// bytes, and sends a request again after a revalidation's 304 that selected nothing.
extension HTTPProxyHandler {
    /// Whether the cache took `request`: answered it, or parked it until the fetch it waits
    /// for ends (then it is answered from the cache or sent upstream from here).
    func answerFromCache(_ request: AdmittedRequest, context: ChannelHandlerContext, afterWait: NIODeadline? = nil) -> Bool {
        guard case .gateway = direction else { return false }
        let exchange = request.exchange
        switch GatewayCacheLookup.decide(request, caches: loop.responseCaches, now: context.eventLoop.now, afterWait: afterWait) {
        case .forward:
            return false
        case .hit(let hit):
            writeCached(hit, exchange: exchange, context: context)
            return true
        case .revalidate(let conditional):
            exchange.cacheFill?.resend = { [weak self] in
                guard let self, self.exchange === exchange, let context = self.context else { return }
                self.refetch(request, context: context)
            }
            forward(conditional, context: context)
            return true
        case .refuse(let error):
            fail(exchange, error, context: context)
            return true
        case .wait(let wait):
            phase = .connecting  // the route timeout (armed at admission) runs on while it waits
            wait.park(on: context.eventLoop) { [self] since in
                guard self.exchange === exchange, let context = self.context else { return }
                if let since, self.answerFromCache(request, context: context, afterWait: since) { return }
                self.forward(request, context: context)
            }
            return true
        }
    }

    /// A cache fetch's response ended (`fill.complete` said `completion`), its upstream
    /// connection already released: whether this answered the exchange (from the entry a 304
    /// refreshed) or sent its request again (a 304 that did not select the entry). False: the
    /// response was relayed, finish the exchange.
    func cacheFetchEnded(
        _ fill: ResponseCacheFill, _ completion: ResponseCacheFill.Completion, exchange: ProxyExchange, context: ChannelHandlerContext
    ) -> Bool {
        switch completion {
        case .relayed:
            return false
        case .revalidated(let cached):
            let hit = CacheHit(revalidated: cached, exchange: exchange, requestHeaders: fill.requestHeaders, isHead: exchange.method == .HEAD)
            writeCached(hit, exchange: exchange, context: context)
        case .refetch:
            exchange.cacheFill = fill.refetch()
            fill.resend?()
        }
        return true
    }

    /// Sends the caller's request upstream again, as a miss, after a revalidation's 304 that did
    /// not select the entry (RFC 9111 §4.3.4): the 304 was not relayed, the route timeout restarts
    /// from the request's start, and the new fill stores the answer for whoever waits.
    private func refetch(_ request: AdmittedRequest, context: ChannelHandlerContext) {
        let exchange = request.exchange
        exchange.upstream = nil  // released at the 304's end
        exchange.responseStarted = false
        exchange.status = 0
        if let rule = request.route?.rule { exchange.deadlines.route = exchange.start + rule.timeout.timeAmount }
        armDeadlineTimer(context: context)
        forward(request, context: context)
    }

    /// Writes an entry as the exchange's answer: the entry's head as received with the hit's
    /// changes, or 304 with its validators.
    private func writeCached(_ hit: CacheHit, exchange: ProxyExchange, context: ChannelHandlerContext) {
        exchange.cancelTimers()
        if !exchange.requestComplete { discardArrivedBody(exchange) }
        if !exchange.requestComplete { exchange.closeAfterResponse = true }
        var added = hit.added
        if exchange.closeAfterResponse { added.append(try! HTTPHeaderLine(name: "connection", value: "close")) }
        var buffer = allocator.buffer(capacity: hit.cached.head.byteCount + 160)
        if hit.notModified {
            buffer.writeStaticString("HTTP/1.1 304 Not Modified\r\n")
            for (name, value) in hit.notModifiedFields { buffer.writeString("\(name): \(value)\r\n") }
            for line in added { buffer.writeString("\(line.name): \(line.value)\r\n") }
            buffer.writeStaticString("\r\n")
        } else {
            HTTPHeadWriter(removing: hit.removed).write(hit.cached.head, adding: added, into: &buffer)
            if !hit.bodyless {
                exchange.bytesSent += hit.cached.body.readableBytes
                buffer.writeImmutableBuffer(hit.cached.body)
            }
        }
        exchange.responseStarted = true
        exchange.status = hit.status
        context.write(wrapOutboundOut(buffer), promise: nil)
        finishExchange(exchange, status: hit.status, context: context)
    }
}
