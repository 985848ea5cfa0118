import NIOCore
import NIOHPACK

/// A gateway stream answered at the edge, as HTTP/2: an `EdgeResponse` of the gateway's
/// filters (CORS preflight, redirect), the response cache (`GatewayCacheLookup` decides, as
/// for HTTP/1.1), or an aggregate rule's merged calls. Anything else goes into the mesh.
extension HTTP2StreamExchange {
    /// Whether the admitted request is (or will be) answered here rather than forwarded.
    func answeredAtEdge(_ request: AdmittedRequest, received: HPACKHeaders) -> Bool {
        if answerFromCache(request, received: received) { return true }
        guard let aggregate = request.gatewayMatch?.rule.aggregate else { return false }
        let exchange = request.exchange
        phase = .connecting
        AggregateExchange.start(aggregate, for: request, loop: loop) { [weak self] result in
            guard let self, self.exchange === exchange else { return }
            switch result {
            case .success(let response): self.answer(exchange, response)
            case .failure(let error): self.fail(exchange, error)
            }
        }
        return true
    }

    private func answerFromCache(_ request: AdmittedRequest, received: HPACKHeaders, afterWait: NIODeadline? = nil) -> Bool {
        let exchange = request.exchange
        switch GatewayCacheLookup.decide(request, caches: loop.responseCaches, now: eventLoop.now, afterWait: afterWait) {
        case .forward:
            return false
        case .hit(let hit):
            writeCached(hit, exchange: exchange)
            return true
        case .revalidate(let conditional):
            exchange.cacheFill?.resend = { [weak self] in  // after a 304 that did not select the entry
                guard let self, self.exchange === exchange else { return }
                self.forward(request, received: received)
            }
            forward(conditional, received: received)
            return true
        case .refuse(let error):
            fail(exchange, error)
            return true
        case .wait(let wait):
            phase = .connecting
            armTimer()  // the route timeout runs on while it waits
            wait.park(on: eventLoop) { [weak self] since in
                guard let self, self.exchange === exchange, self.phase == .connecting else { return }
                if let since, self.answerFromCache(request, received: received, afterWait: since) { return }
                self.forward(request, received: received)
            }
            return true
        }
    }

    /// A revalidation's 304 ended (`ResponseCacheFill.complete` refreshed the entry): the
    /// caller gets the entry, as a hit marked `revalidated`.
    func answerRevalidated(_ cached: CachedResponse, requestHeaders: HTTPRawHeaders, exchange: ProxyExchange) {
        writeCached(CacheHit(revalidated: cached, exchange: exchange, requestHeaders: requestHeaders, isHead: exchange.method == .HEAD), exchange: exchange)
    }

    /// A response the gateway makes that is no error: its headers, length, request id and body.
    func answer(_ exchange: ProxyExchange, _ response: EdgeResponse) {
        var headers = HPACKHeaders([(":status", String(response.status))])
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        for line in exchange.addedResponseHeaders { headers.add(name: line.name, value: line.value) }  // the rule's CORS
        if response.status != 204 && response.status != 304 {
            headers.add(name: "content-length", value: String(response.body.utf8.count))
        }
        headers.add(name: "x-request-id", value: exchange.requestID)
        writeAnswer(headers, body: response.body.isEmpty ? nil : ByteBuffer(string: response.body), status: response.status, for: exchange)
    }

    /// An entry as the answer: its fields without HTTP/1.1's connection-specific ones and with
    /// the hit's changes, its content (de-chunked); or 304 with its validators.
    private func writeCached(_ hit: CacheHit, exchange: ProxyExchange) {
        var headers = HPACKHeaders([(":status", String(hit.status))])
        if hit.notModified {
            for (name, value) in hit.notModifiedFields { headers.add(name: name, value: value) }
            for line in hit.added { headers.add(name: line.name, value: line.value) }
            writeAnswer(headers, body: nil, status: hit.status, for: exchange)
            return
        }
        let chunked = hit.cached.head.framing.body == .chunked
        for (name, value) in hit.cached.head.headers.decoded {
            let name = name.lowercased()
            if !HTTP1AppStream.connectionSpecific.contains(name) { headers.add(name: name, value: value) }
        }
        headers = HTTP2Headers.response(headers, removing: hit.removed, adding: hit.added)
        let content = hit.cached.content
        if chunked { headers.add(name: "content-length", value: String(content.readableBytes)) }
        writeAnswer(headers, body: hit.bodyless || content.readableBytes == 0 ? nil : content, status: hit.status, for: exchange)
    }

    /// Writes a whole answer made here and ends the exchange (the caller is told to stop
    /// sending a body it has not finished).
    private func writeAnswer(_ headers: HPACKHeaders, body: ByteBuffer?, status: Int, for exchange: ProxyExchange) {
        guard phase != .done else { return }
        write(.headers(.init(headers: headers, endStream: body == nil)))
        if let body {
            exchange.bytesSent += body.readableBytes
            write(.data(.init(data: .byteBuffer(body), endStream: true)))
        }
        downstream.flush()
        responseStarted = true
        exchange.status = status
        end(exchange, status: status)
        stopCallerSending(exchange)
    }
}

extension ResponseCacheFill {
    /// An HTTP/2 response head, kept in the HTTP/1.1 form the cache stores: its fields under a
    /// status line, chunked when it gives no `content-length` (`responseData` frames the DATA).
    func responseHead(http2 headers: HPACKHeaders, endStream: Bool) {
        var buffer = ByteBuffer()
        buffer.writeString("HTTP/1.1 \(headers.first(name: ":status") ?? "502") \r\n")
        var hasLength = false
        for (name, value, _) in headers where name.utf8.first != UInt8(ascii: ":") {
            if name == "content-length" { hasLength = true }
            buffer.writeString("\(name): \(value)\r\n")
        }
        if !hasLength { buffer.writeString(endStream ? "content-length: 0\r\n" : "transfer-encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
        var parser = HTTPHeadParser()
        guard let head = try? parser.parseResponse(&buffer, requestMethod: .GET) else { return }  // not stored
        responseHead(head)
    }
}
