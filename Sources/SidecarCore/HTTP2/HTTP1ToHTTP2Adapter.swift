import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// An HTTP/1.1 caller to an app that speaks HTTP/2 (`inbound.protocol: http2` or `grpc`):
/// NIOHTTP1 decodes each request, this adapter hands it to an `HTTP2StreamProxyHandler` as
/// the frames of one stream (so it passes the same filters and goes to the app as an h2c
/// stream), and turns the stream's answer back into an HTTP/1.1 response (chunked, with
/// trailers, when no length is known). One exchange at a time; a fresh stream handler per
/// request (`HTTPServerPipelineHandler` holds pipelined ones back).
final class HTTP1ToHTTP2Adapter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTPServerResponsePart

    private let makeStream: () -> HTTP2StreamProxyHandler
    private var stream: HTTP2StreamProxyHandler?
    private var keepAlive = true
    private var responseHeadSent = false

    init(makeStream: @escaping () -> HTTP2StreamProxyHandler) {
        self.makeStream = makeStream
    }

    func handlerAdded(context: ChannelHandlerContext) {
        addStream(context: context)
    }

    private func addStream(context: ChannelHandlerContext) {
        let stream = makeStream()
        self.stream = stream
        responseHeadSent = false
        try? context.pipeline.syncOperations.addHandler(stream, position: .after(self))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            context.fireChannelRead(wrapInboundOut(.headers(.init(headers: Self.streamHead(head), endStream: false))))
        case .body(let body):
            context.fireChannelRead(wrapInboundOut(.data(.init(data: .byteBuffer(body), endStream: false))))
        case .end(let trailers):
            if let trailers, !trailers.isEmpty {
                let block = HPACKHeaders(trailers.map { ($0.name.lowercased(), $0.value) })
                context.fireChannelRead(wrapInboundOut(.headers(.init(headers: block, endStream: true))))
            } else {
                context.fireChannelRead(wrapInboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))))
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .headers(let headers) where !responseHeadSent:
            responseHeadSent = true
            var fields = HTTPHeaders()
            var status = 502
            for (name, value, _) in headers.headers {
                if name == ":status" { status = Int(value) ?? 502 } else if name.utf8.first != UInt8(ascii: ":") { fields.add(name: name, value: value) }
            }
            if !keepAlive { fields.replaceOrAdd(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: fields))), promise: promise)
            if headers.endStream { finish(context: context, trailers: nil) }
        case .headers(let trailers):
            finish(context: context, trailers: HTTPHeaders(trailers.headers.map { ($0.name, $0.value) }), promise: promise)
        case .data(let data):
            if case .byteBuffer(let body) = data.data, body.readableBytes > 0 {
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: data.endStream ? nil : promise)
            }
            if data.endStream { finish(context: context, trailers: nil, promise: promise) }
        case .rstStream:
            // HTTP/1.1 has no stream to reset: the connection carries no further request.
            promise?.succeed(())
            if !responseHeadSent { context.close(promise: nil) } else { keepAlive = false }
        default:
            promise?.succeed(())
        }
    }

    /// The response ended: the next request gets a fresh stream handler, or the connection closes.
    private func finish(context: ChannelHandlerContext, trailers: HTTPHeaders?, promise: EventLoopPromise<Void>? = nil) {
        let keepAlive = self.keepAlive
        context.writeAndFlush(wrapOutboundOut(.end(trailers))).assumeIsolated().whenComplete { _ in
            promise?.succeed(())
            if !keepAlive { context.close(promise: nil) }
        }
        guard keepAlive else { return }
        // The old stream handler has recorded its exchange; leave it before the next request.
        if let stream { context.pipeline.syncOperations.removeHandler(stream, promise: nil) }
        context.eventLoop.assumeIsolated().execute { [weak self] in
            guard let self, context.channel.isActive else { return }
            self.addStream(context: context)
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
