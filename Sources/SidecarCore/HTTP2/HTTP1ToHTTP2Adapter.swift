import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// An HTTP/1.1 caller to an app that speaks HTTP/2 (`inbound.protocol: http2` or `grpc`):
/// NIOHTTP1 decodes each request, this adapter hands it to an `HTTP2StreamExchange` as the
/// frames of one stream (so it passes the same filters and goes to the app as an h2c stream),
/// and is that exchange's downstream: it turns the stream's answer back into an HTTP/1.1
/// response (chunked, with trailers, when no length is known). One exchange at a time, a fresh
/// one per request (`HTTPServerPipelineHandler` holds pipelined ones back); each gets the next
/// odd stream id, and frames of an earlier one are dropped. Reads are held while the exchange
/// takes no more request body.
final class HTTP1ToHTTP2Adapter: ChannelDuplexHandler, RemovableChannelHandler, HTTP2Downstream {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPServerResponsePart

    let side: HTTP2StreamExchange.Side
    let loop: LoopContext
    let accessLog: AccessLog
    let clock: HTTP2StreamClock
    private var context: ChannelHandlerContext?
    private var stream: HTTP2StreamExchange?
    private var streamID = HTTP2StreamID(1)
    private var nextStreamID = 1
    private var keepAlive = true
    private var responseHeadSent = false
    private var pendingRead = false

    init(side: HTTP2StreamExchange.Side, loop: LoopContext, accessLog: AccessLog, eventLoop: EventLoop) {
        self.side = side
        self.loop = loop
        self.accessLog = accessLog
        self.clock = HTTP2StreamClock(eventLoop: eventLoop)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stream?.downstreamClosed()
        stream = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            responseHeadSent = false
            streamID = HTTP2StreamID(nextStreamID)
            nextStreamID += 2
            let exchange = HTTP2StreamExchange(
                streamID: streamID, downstream: self, eventLoop: context.eventLoop, allocator: context.channel.allocator,
                side: side, loop: loop, accessLog: accessLog, clock: clock)
            stream = exchange
            exchange.received(.headers(.init(headers: Self.streamHead(head), endStream: false)))
        case .body(let body):
            stream?.received(.data(.init(data: .byteBuffer(body), endStream: false)))
        case .end(let trailers):
            if let trailers, !trailers.isEmpty {
                let block = HPACKHeaders(trailers.map { ($0.name.lowercased(), $0.value) })
                stream?.received(.headers(.init(headers: block, endStream: true)))
            } else {
                stream?.received(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        stream?.downstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if stream?.wantsDownstreamFrames ?? true { context.read() } else { pendingRead = true }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        stream?.downstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stream?.downstreamClosed()
        stream = nil
        context.fireChannelInactive()
    }

    // MARK: HTTP2Downstream (called by the exchange)

    /// Its heads are made from HTTP/1.1 ones (parsed by NIOHTTP1), never checked as HTTP/2 blocks.
    var checksRequestBlocks: Bool { false }

    func write(_ payload: HTTP2Frame.FramePayload, on id: HTTP2StreamID, checked: Bool) {
        guard let context, id == streamID, stream != nil else { return }
        switch payload {
        case .headers(let headers) where !responseHeadSent:
            responseHeadSent = true
            var fields = HTTPHeaders()
            var status = 502
            for (name, value, _) in headers.headers {
                if name == ":status" { status = Int(value) ?? 502 } else if name.utf8.first != UInt8(ascii: ":") { fields.add(name: name, value: value) }
            }
            if !keepAlive { fields.replaceOrAdd(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: fields))), promise: nil)
            if headers.endStream { finish(context: context, trailers: nil) }
        case .headers(let trailers):
            finish(context: context, trailers: HTTPHeaders(trailers.headers.map { ($0.name, $0.value) }))
        case .data(let data):
            if case .byteBuffer(let body) = data.data, body.readableBytes > 0 {
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            }
            if data.endStream { finish(context: context, trailers: nil) }
        case .rstStream(let code):
            // HTTP/1.1 has no stream to reset: a response cut short closes the connection; an
            // answer before the request ended carries no further request.
            if !responseHeadSent || code != .noError { context.close(promise: nil) } else { keepAlive = false }
        default:
            break
        }
    }

    func flush() {
        context?.flush()
    }

    func isWritable(_ id: HTTP2StreamID) -> Bool {
        context?.channel.isWritable ?? false
    }

    func readsResumed(_ id: HTTP2StreamID) {
        guard pendingRead, id == streamID, let context else { return }
        pendingRead = false
        context.read()
    }

    /// The response ended: the next request gets a fresh exchange, or the connection closes.
    private func finish(context: ChannelHandlerContext, trailers: HTTPHeaders?) {
        // The exchange records itself; the next head (which `HTTPServerPipelineHandler` may
        // deliver during this write) makes the next one.
        stream = nil
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(trailers))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
        if pendingRead {
            pendingRead = false
            context.read()
        }
    }

    /// The HTTP/2 head of an HTTP/1.1 request: pseudo-headers first, `Host` as `:authority`,
    /// names lowercased, connection-specific fields dropped (RFC 9113 §8.2.2).
    static func streamHead(_ head: HTTPRequestHead) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.reserveCapacity(head.headers.count + 4)
        headers.add(name: ":method", value: head.method.rawValue)
        headers.add(name: ":scheme", value: "http")
        headers.add(name: ":authority", value: head.headers.first(name: "host") ?? "")
        headers.add(name: ":path", value: head.uri)
        for (name, value) in head.headers {
            let name = name.lowercased()
            if name == "host" || HTTP1AppStream.connectionSpecific.contains(name) { continue }
            headers.add(name: name, value: value)
        }
        // `te` is hop-by-hop in HTTP/1.1 (the caller's proxy drops it), yet a gRPC server
        // requires `te: trailers`, the one value HTTP/2 allows.
        if GRPC.isGRPC(contentType: headers.first(name: "content-type")) { headers.add(name: "te", value: "trailers") }
        return headers
    }
}
