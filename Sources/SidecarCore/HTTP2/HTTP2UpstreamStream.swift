import NIOCore
import NIOHPACK
import NIOHTTP2

/// A request part going upstream, as the HTTP/2 exchange relays it (and keeps for a replay).
enum HTTP2RequestPart {
    case headers(HPACKHeaders, endStream: Bool)
    case data(ByteBuffer, endStream: Bool)
    case trailers(HPACKHeaders)

    var bodyBytes: Int {
        if case .data(let data, _) = self { return data.readableBytes }
        return 0
    }
}

/// How an upstream stream ended before its response did.
enum HTTP2StreamFailure {
    /// The peer refused it unprocessed (REFUSED_STREAM, or past a GOAWAY's last stream): always
    /// safe to send again.
    case refused
    /// Reset or closed mid-exchange.
    case reset(String)
    /// The connection under it failed (connect, TLS).
    case connection(ProxyError)
}

/// Where an HTTP/2 exchange sends its request: a stream on a multiplexed upstream connection
/// (`HTTP2UpstreamStreamHandler`), or an HTTP/1.1 connection to the app (`HTTP1AppStream`).
protocol HTTP2Upstream: AnyObject {
    func send(_ part: HTTP2RequestPart)
    func flush()
    var isWritable: Bool { get }
    /// Stop (or resume) reading the response while the caller cannot take more.
    func setReadsPaused(_ paused: Bool)
    /// The exchange no longer wants it: reset the stream (or close the connection).
    func cancel()
}

/// What an `HTTP2Upstream` tells its exchange, by direct calls on the shared loop, in order:
/// one final head, data, optional trailers (or `endStream` on data or the head), or one failure.
protocol HTTP2UpstreamOwner: AnyObject {
    func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool)
    func upstreamData(_ data: ByteBuffer, endStream: Bool)
    func upstreamTrailers(_ trailers: HPACKHeaders)
    func upstreamFailed(_ failure: HTTP2StreamFailure)
    func upstreamWritabilityChanged(_ writable: Bool)
    func upstreamReadComplete()
}

/// The handler of one upstream HTTP/2 stream channel: relays the response's frames to the
/// exchange that opened it, and holds reads while the caller's stream cannot take more
/// (unread frames hold back WINDOW_UPDATEs, so the upstream stops sending: flow control).
final class HTTP2UpstreamStreamHandler: ChannelDuplexHandler, HTTP2Upstream {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    weak var owner: (any HTTP2UpstreamOwner)?
    private var context: ChannelHandlerContext?
    private var sawFinalHeaders = false
    private var ended = false
    private var readsPaused = false
    private var pendingRead = false
    private var resetCode: HTTP2ErrorCode?

    init(owner: any HTTP2UpstreamOwner) {
        self.owner = owner
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: HTTP2Upstream

    func send(_ part: HTTP2RequestPart) {
        guard let context else { return }
        switch part {
        case .headers(let headers, let endStream):
            context.write(wrapOutboundOut(.headers(.init(headers: headers, endStream: endStream))), promise: nil)
        case .data(let data, let endStream):
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(data), endStream: endStream))), promise: nil)
        case .trailers(let trailers):
            context.write(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
        }
    }

    func flush() { context?.flush() }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func setReadsPaused(_ paused: Bool) {
        readsPaused = paused
        if !paused, pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }

    func cancel() {
        owner = nil
        ended = true
        context?.close(promise: nil)
    }

    // MARK: Channel events

    func read(context: ChannelHandlerContext) {
        if readsPaused { pendingRead = true } else { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !ended else { return }
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if !sawFinalHeaders {
                // Informational heads (100 Continue, 103) are not relayed: the sidecar already
                // takes the whole request body.
                if let status = headers.headers.first(name: ":status"), status.utf8.first == UInt8(ascii: "1") { return }
                sawFinalHeaders = true
                if headers.endStream { ended = true }
                owner?.upstreamHeaders(headers.headers, endStream: headers.endStream)
            } else {
                ended = true
                owner?.upstreamTrailers(headers.headers)
            }
        case .data(let data):
            guard case .byteBuffer(let buffer) = data.data else { return }
            if data.endStream { ended = true }
            owner?.upstreamData(buffer, endStream: data.endStream)
        case .rstStream(let code):
            resetCode = code
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        owner?.upstreamWritabilityChanged(context.channel.isWritable)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let closed = error as? NIOHTTP2Errors.StreamClosed { resetCode = closed.errorCode }
    }

    func channelInactive(context: ChannelHandlerContext) {
        guard !ended else { return }
        ended = true
        let owner = self.owner
        self.owner = nil
        if resetCode == .refusedStream {
            owner?.upstreamFailed(.refused)
        } else if let resetCode {
            owner?.upstreamFailed(.reset("the upstream reset the stream (\(resetCode))"))
        } else {
            owner?.upstreamFailed(.reset("the upstream closed the stream before the response ended"))
        }
    }
}
