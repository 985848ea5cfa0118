import NIOCore

/// The gateway's response cache on an HTTP/1.1 connection. Once every filter admitted a GET or
/// HEAD on a rule with `cache:`, the loop's cache answers it (a hit, or 304 for a matching
/// `If-None-Match`), parks it behind a fetch of the same key already in flight, or lets it go
/// upstream, filling the cache when it leads. `ResponseCacheStateMachine` decides; this file
/// carries the decisions out. Answers carry `age` and `x-mesh-cache: hit|miss`.
extension HTTPProxyHandler {
    typealias CacheLookup = ResponseCacheStateMachine<CachedResponse>

    /// Whether the cache took `request`: answered it, or parked it until the fetch it waits
    /// for ends (then it is answered from the cache or sent upstream from here).
    func answerFromCache(_ request: AdmittedRequest, context: ChannelHandlerContext, afterWait: Bool = false) -> Bool {
        guard case .gateway = direction, let match = request.gatewayMatch, let policy = match.rule.cache,
            request.head.method == .GET || request.head.method == .HEAD
        else { return false }
        let exchange = request.exchange
        let caches = loop.responseCaches
        let cache = caches.cache(for: match, policy: policy)
        let headers = request.head.headers
        let key = exchange.authority.lowercased() + " " + request.target.originForm
        let asked = CacheLookup.Request(
            // A verified user (JWT or API key) counts as Authorization: its answers may be its own.
            key: key, isHead: request.head.method == .HEAD, hasAuthorization: request.user != nil || headers.contains("authorization"),
            cacheControl: CacheControl(headers.values(named: "cache-control")),
            ifNoneMatch: headers.firstValue(named: "if-none-match"))
        let lookup = cache.machine.lookup(
            asked, header: { headers.firstValue(named: $0) }, now: context.eventLoop.now, mayWait: !afterWait, mayLead: !afterWait)
        switch lookup {
        case .hit(let cached, let age, let etag, let notModified):
            cache.count(afterWait ? .coalesced : .hit)
            writeCached(cached, age: age, etag: etag, notModified: notModified, bodyless: asked.isHead, exchange: exchange, context: context)
            return true
        case .wait:
            phase = .connecting  // the route timeout (armed at admission) runs on while it waits
            caches.wait(for: key, in: cache) { [self] fetched in
                guard self.exchange === exchange, let context = self.context else { return }
                if fetched, self.answerFromCache(request, context: context, afterWait: true) { return }
                if !fetched { self.markCacheMiss(exchange, cache: cache) }
                self.forward(request, context: context)
            }
            return true
        case .fetch:
            exchange.cacheFill = ResponseCacheFill(cache: cache, caches: caches, key: key, requestHeaders: headers)
            markCacheMiss(exchange, cache: cache)
        case .bypass(let reason):
            switch reason {
            case .requestDirective, .authorization, .headMiss: cache.count(.bypass)
            case .waitersFull, .afterWait: cache.count(.miss)
            }
            exchange.addedResponseHeaders.append(Self.cacheMissLine)
        }
        return false
    }

    private static let cacheMissLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "miss")
    private static let cacheHitLine = try! HTTPHeaderLine(name: "x-mesh-cache", value: "hit")

    private func markCacheMiss(_ exchange: ProxyExchange, cache: GatewayResponseCaches.RuleCache) {
        cache.count(.miss)
        exchange.addedResponseHeaders.append(Self.cacheMissLine)
    }

    /// Writes an entry as the exchange's answer (the route's response header rewrites and CORS
    /// applied as to a relayed response), or 304 with its validators when `notModified`.
    private func writeCached(
        _ cached: CachedResponse, age: Int64, etag: String?, notModified: Bool, bodyless: Bool, exchange: ProxyExchange,
        context: ChannelHandlerContext
    ) {
        exchange.cancelTimers()
        if !exchange.requestComplete { discardArrivedBody(exchange) }
        if !exchange.requestComplete { exchange.closeAfterResponse = true }
        let changes = responseHeaderChanges(exchange)
        var added = changes.added
        added.append(try! HTTPHeaderLine(name: "age", value: String(age)))
        added.append(Self.cacheHitLine)
        if exchange.closeAfterResponse { added.append(try! HTTPHeaderLine(name: "connection", value: "close")) }
        var buffer = context.channel.allocator.buffer(capacity: cached.head.byteCount + 160)
        let status: Int
        if notModified {
            // RFC 9110 §15.4.5: the validators and caching fields a 200 would carry, no body.
            status = 304
            buffer.writeStaticString("HTTP/1.1 304 Not Modified\r\n")
            for name in ["etag", "cache-control", "vary", "expires", "last-modified"] where !added.contains(where: { $0.name == name }) {
                if let value = cached.head.headers.firstValue(named: name) { buffer.writeString("\(name): \(value)\r\n") }
            }
            for line in added { buffer.writeString("\(line.name): \(line.value)\r\n") }
            buffer.writeStaticString("\r\n")
        } else {
            status = cached.head.status
            HTTPHeadWriter(removing: changes.removed).write(cached.head, adding: added, into: &buffer)
            if !bodyless {
                exchange.bytesSent += cached.body.readableBytes
                buffer.writeImmutableBuffer(cached.body)
            }
        }
        exchange.responseStarted = true
        exchange.status = status
        context.write(wrapOutboundOut(buffer), promise: nil)
        finishExchange(exchange, status: status, context: context)
    }
}
