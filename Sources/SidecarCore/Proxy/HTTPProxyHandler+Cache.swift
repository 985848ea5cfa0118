import NIOCore

/// The gateway's response cache on an HTTP/1.1 connection: `GatewayCacheLookup` decides (a
/// hit, a wait behind a fetch in flight, a revalidation, or upstream, filling the cache when it
/// leads); this file carries the decisions out as HTTP/1.1 bytes.
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
            forward(conditional, context: context)
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

    /// A revalidation's 304 ended (`ResponseCacheFill.complete` refreshed the entry): the
    /// caller gets the entry, as a hit marked `revalidated`.
    func answerRevalidated(_ cached: CachedResponse, requestHeaders: HTTPRawHeaders, exchange: ProxyExchange, context: ChannelHandlerContext) {
        let hit = CacheHit(revalidated: cached, exchange: exchange, requestHeaders: requestHeaders, isHead: exchange.method == .HEAD)
        writeCached(hit, exchange: exchange, context: context)
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
