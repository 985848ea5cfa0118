import NIOCore
import NIOHPACK
import NIOHTTP1

/// An HTTP/2 caller's stream to an app that speaks HTTP/1.1 (`inbound.protocol: http`),
/// translated: the stream's head becomes a request head (`:authority` → `Host`, chunked when the
/// length is unknown), its DATA the body, its trailers chunked trailers; the response comes back
/// as HEADERS, DATA and trailers. Connection-specific headers (RFC 9113 §8.2.2) are dropped
/// going back. One request at a time per connection; connections are kept per loop for reuse
/// (NIOHTTP1's codec frames both ways).
final class HTTP1AppStream: HTTP2Upstream {
    /// Its heads are NIOHTTP1's, translated: checked when sent.
    var checksResponseBlocks: Bool { false }
    private weak var owner: (any HTTP2UpstreamOwner)?
    private let loop: LoopContext
    private var handler: HTTP1AppConnectionHandler?
    private var app: HostPort?
    /// The whole request went out (only then may the connection carry another).
    private var requestEnded = false

    init(owner: any HTTP2UpstreamOwner, loop: LoopContext) {
        self.owner = owner
        self.loop = loop
    }

    /// A connection to `app` from this loop's pool (idle, new, or the next one released).
    func connect(to app: HostPort, connectTimeout: TimeAmount) -> EventLoopFuture<Void> {
        self.app = app
        return loop.http2Pool.leaseHTTP1(app, connectTimeout: connectTimeout).assumeIsolated().map { [self] handler in
            attach(handler)
        }.nonisolated()
    }

    private func attach(_ handler: HTTP1AppConnectionHandler) {
        self.handler = handler
        handler.stream = self
    }

    // MARK: HTTP2Upstream

    func send(_ part: HTTP2RequestPart) {
        guard let handler else { return }
        switch part {
        case .headers(let headers, let endStream, _):
            handler.write(.head(Self.requestHead(headers, endStream: endStream)))
            if endStream { handler.write(.end(nil)) }
            requestEnded = endStream
        case .data(let data, let endStream):
            if data.readableBytes > 0 { handler.write(.body(.byteBuffer(data))) }
            if endStream { handler.write(.end(nil)) }
            requestEnded = endStream
        case .trailers(let trailers):
            handler.write(.end(HTTPHeaders(trailers.map { ($0.name, $0.value) })))
            requestEnded = true
        }
    }

    func flush() { handler?.context?.flush() }

    var isWritable: Bool { handler?.context?.channel.isWritable ?? false }

    func setReadsPaused(_ paused: Bool) { handler?.setReadsPaused(paused) }

    func cancel() {
        owner = nil
        if let handler {
            handler.stream = nil
            if handler.finished, let app {
                // Leased but never used (the exchange went away while waiting): back to the pool.
                loop.http2Pool.releaseHTTP1(handler, for: app)
            } else {
                handler.context?.close(promise: nil)  // mid-exchange: the connection's framing is lost
            }
        }
        handler = nil
    }

    /// The HTTP/1.1 request head for an HTTP/2 stream's head.
    static func requestHead(_ headers: HPACKHeaders, endStream: Bool) -> HTTPRequestHead {
        var fields = HTTPHeaders()
        fields.reserveCapacity(headers.count + 1)
        var method = "GET", path = "/"
        var hasLength = false
        for (name, value, _) in headers {
            switch name {
            case ":method": method = value
            case ":path": path = value
            case ":authority": fields.replaceOrAdd(name: "host", value: value)
            case ":scheme": break
            case "host": if !fields.contains(name: "host") { fields.add(name: "host", value: value) }
            case "te": break  // HTTP/2 allows only `te: trailers`; an HTTP/1.1 hop needs none
            default:
                if name == "content-length" { hasLength = true }
                fields.add(name: name, value: value)
            }
        }
        if !hasLength {
            if endStream {
                if method != "GET" && method != "HEAD" { fields.add(name: "content-length", value: "0") }
            } else {
                fields.add(name: "transfer-encoding", value: "chunked")
            }
        }
        return HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: fields)
    }

    /// The HTTP/2 response head for an HTTP/1.1 response head.
    static func responseHead(_ head: HTTPResponseHead) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.reserveCapacity(head.headers.count + 1)
        headers.add(name: ":status", value: String(head.status.code))
        for (name, value) in head.headers {
            let name = name.lowercased()
            if connectionSpecific.contains(name) { continue }
            headers.add(name: name, value: value)
        }
        return headers
    }

    static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"]

    // MARK: From the connection

    fileprivate func responseHead(_ head: HTTPResponseHead) {
        owner?.upstreamHeaders(Self.responseHead(head), endStream: false)
    }

    fileprivate func responseBody(_ body: ByteBuffer) {
        owner?.upstreamData(body, endStream: false)
    }

    fileprivate func responseEnd(_ trailers: HTTPHeaders?, reusable: Bool) {
        let owner = self.owner
        if let handler, let app {
            handler.stream = nil
            if reusable && requestEnded {
                loop.http2Pool.releaseHTTP1(handler, for: app)
            } else {
                handler.context?.close(promise: nil)
            }
        }
        handler = nil
        if let trailers, !trailers.isEmpty {
            owner?.upstreamTrailers(HPACKHeaders(trailers.map { ($0.name.lowercased(), $0.value) }))
        } else {
            owner?.upstreamData(ByteBuffer(), endStream: true)
        }
    }

    fileprivate func failed() {
        handler = nil
        owner?.upstreamFailed(.reset("the app closed the connection before the response ended"))
    }

    fileprivate func readComplete() { owner?.upstreamReadComplete() }
    fileprivate func writabilityChanged(_ writable: Bool) { owner?.upstreamWritabilityChanged(writable) }
}

/// The last handler of an HTTP/1.1 connection to the app, between the codec and the stream
/// that uses it (nil while idle in the loop's pool).
final class HTTP1AppConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    fileprivate var stream: HTTP1AppStream?
    fileprivate(set) var context: ChannelHandlerContext?
    private(set) var finished = true
    private var keepAlive = true
    private var readsPaused = false
    private var pendingRead = false
    /// Called once when the connection closes (the pool forgets it).
    var onClose: (() -> Void)?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    fileprivate func write(_ part: HTTPClientRequestPart) {
        if case .head = part { finished = false }
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    fileprivate func setReadsPaused(_ paused: Bool) {
        readsPaused = paused
        if !paused, pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if readsPaused { pendingRead = true } else { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard head.status.code >= 200 else { return }  // informational: the body is ours to send
            keepAlive = head.isKeepAlive
            stream?.responseHead(head)
        case .body(let body):
            stream?.responseBody(body)
        case .end(let trailers):
            finished = true
            readsPaused = false
            stream?.responseEnd(trailers, reusable: keepAlive)
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { stream?.readComplete() }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        stream?.writabilityChanged(context.channel.isWritable)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose?()
        onClose = nil
        if !finished { stream?.failed() }
        stream = nil
    }
}
