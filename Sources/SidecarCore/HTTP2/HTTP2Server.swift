import NIOCore
import NIOHTTP1
import NIOHTTP2

/// The downstream side of HTTP/2: a connection that speaks it gets a flush coalescer (one flush
/// per read batch), NIOHTTP2's handler in frame mode (framing, HPACK, the protocol's state) and
/// `HTTP2DownstreamConnection`, which makes one `HTTP2StreamExchange` per stream the caller opens
/// and drains the connection (GOAWAY, then close once its streams end) on drain or when idle.
enum HTTP2Server {
    /// Turns `channel` (after its TLS handler, if any) into an HTTP/2 server connection.
    static func configure(
        _ channel: Channel, side: HTTP2StreamExchange.Side, loop: LoopContext, accessLog: AccessLog,
        drainTimeout: TimeAmount, idleTimeout: TimeAmount, defaultDestination: String? = nil
    ) throws {
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(HTTP2FlushCoalescer(batch: loop.http2Pool.readBatch))
        try sync.addHandler(
            NIOHTTP2Handler(mode: .server, connectionConfiguration: HTTP2Settings.server, streamConfiguration: HTTP2Settings.stream))
        try sync.addHandler(
            HTTP2DownstreamConnection(
                side: side, loop: loop, accessLog: accessLog, eventLoop: channel.eventLoop, defaultDestination: defaultDestination,
                idleTimeout: idleTimeout, drainTimeout: drainTimeout))
        try sync.addHandler(QuiescingDownstreamConnection(loop: loop, direction: side.direction))
    }
}

extension HTTP2StreamExchange.Side {
    var direction: TrafficDirection {
        switch self {
        case .outbound: return .outbound
        case .inbound: return .inbound
        case .gateway: return .gateway
        }
    }
}

/// A downstream connection served by NIO's codecs (HTTP/2, or HTTP/1.1 translated for an
/// HTTP/2 app) as the loop knows it: counted in `sidecar_connections_open{direction}`, and
/// told to drain by `ChannelShouldQuiesceEvent` (HTTP/2: GOAWAY, then close once the open
/// streams end; HTTP/1.1: close after the request in flight).
final class QuiescingDownstreamConnection: ChannelInboundHandler, DownstreamConnection {
    typealias InboundIn = HTTP2Frame

    let loop: LoopContext
    let gauge: Gauge
    private var context: ChannelHandlerContext?

    init(loop: LoopContext, direction: TrafficDirection) {
        self.loop = loop
        self.gauge = loop.metrics.connectionsOpen(direction)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loop.connectionOpened(self)
        gauge.increment()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        loop.connectionClosed(self)
        gauge.decrement()
        self.context = nil
    }

    func beginDrain() {
        context?.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
}

/// The outbound port (and a gateway's plain listener) takes HTTP/1.1 and h2c with prior
/// knowledge: this first handler reads until the bytes are (or cannot be) the HTTP/2
/// connection preface, then leaves the connection to `HTTPProxyHandler` (already after it) or
/// replaces that with HTTP/2. An intercepted connection's service (`defaultDestination`) goes to either.
final class OutboundProtocolDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let loop: LoopContext
    private let accessLog: AccessLog
    private let drainTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let defaultDestination: String?
    /// A gateway's plain listener: its streams are the gateway's.
    private let gateway: GatewayListenerRole?
    private var received: ByteBuffer?

    init(
        loop: LoopContext, accessLog: AccessLog, drainTimeout: TimeAmount, idleTimeout: TimeAmount, defaultDestination: String? = nil,
        gateway: GatewayListenerRole? = nil
    ) {
        self.loop = loop
        self.accessLog = accessLog
        self.drainTimeout = drainTimeout
        self.idleTimeout = idleTimeout
        self.defaultDestination = defaultDestination
        self.gateway = gateway
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received == nil { received = bytes } else { received!.writeBuffer(&bytes) }
        switch HTTP2Preface.classify(received!) {
        case .needMoreBytes:
            return
        case .http1:
            let buffered = received!
            received = nil
            context.fireChannelRead(wrapInboundOut(buffered))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .http2:
            let buffered = received!
            received = nil
            do {
                let sync = context.pipeline.syncOperations
                if let http1 = try? sync.handler(type: HTTPProxyHandler.self) {
                    sync.removeHandler(http1, promise: nil)
                }
                let side = gateway.map { HTTP2StreamExchange.Side.gateway($0, client: context.channel.remoteAddress?.ipAddress) }
                try HTTP2Server.configure(
                    context.channel, side: side ?? .outbound, loop: loop, accessLog: accessLog, drainTimeout: drainTimeout,
                    idleTimeout: idleTimeout, defaultDestination: defaultDestination)
                context.fireChannelRead(wrapInboundOut(buffered))
                sync.removeHandler(context: context, promise: nil)
            } catch {
                context.close(promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }
}

/// The inbound after its TLS handshake: a caller that negotiated ALPN `h2` gets HTTP/2 (its
/// streams authorized as the verified identity), any other keeps `HTTPProxyHandler`.
final class InboundProtocolSwitch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let loop: LoopContext
    private let accessLog: AccessLog
    private let app: HostPort
    private let appSpeaksHTTP2: Bool
    private let drainTimeout: TimeAmount
    private let idleTimeout: TimeAmount

    init(
        loop: LoopContext, accessLog: AccessLog, app: HostPort, appSpeaksHTTP2: Bool, drainTimeout: TimeAmount,
        idleTimeout: TimeAmount
    ) {
        self.loop = loop
        self.accessLog = accessLog
        self.app = app
        self.appSpeaksHTTP2 = appSpeaksHTTP2
        self.drainTimeout = drainTimeout
        self.idleTimeout = idleTimeout
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let info) = event as? TLSEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if info.negotiatedProtocol == HTTPProxyHandler.tunnelALPN || (info.negotiatedProtocol != "h2" && !appSpeaksHTTP2) {
            // HTTP/1.1 to an HTTP/1.1 app (bytes relayed by `HTTPProxyHandler`), or a TCP tunnel.
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        if info.negotiatedProtocol != "h2" {
            translateHTTP1(caller: info.peerIdentity?.serviceName, context: context)
            return
        }
        let caller = info.peerIdentity?.serviceName
        let sync = context.pipeline.syncOperations
        do {
            if let http1 = try? sync.handler(type: HTTPProxyHandler.self) { sync.removeHandler(http1, promise: nil) }
            let metrics = loop.metrics.requests.handle(direction: .inbound, peer: caller ?? "unknown")
            try HTTP2Server.configure(
                context.channel, side: .inbound(app: app, appSpeaksHTTP2: appSpeaksHTTP2, caller: caller, metrics: metrics),
                loop: loop, accessLog: accessLog, drainTimeout: drainTimeout, idleTimeout: idleTimeout)
            sync.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}

extension InboundProtocolSwitch {
    /// An HTTP/1.1 caller to an app that speaks HTTP/2: each request becomes an h2c stream.
    private func translateHTTP1(caller: String?, context: ChannelHandlerContext) {
        let sync = context.pipeline.syncOperations
        do {
            if let http1 = try? sync.handler(type: HTTPProxyHandler.self) { sync.removeHandler(http1, promise: nil) }
            let metrics = loop.metrics.requests.handle(direction: .inbound, peer: caller ?? "unknown")
            let side = HTTP2StreamExchange.Side.inbound(app: app, appSpeaksHTTP2: true, caller: caller, metrics: metrics)
            try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
            try sync.addHandler(HTTPResponseEncoder())
            try sync.addHandler(HTTPServerPipelineHandler())
            try sync.addHandler(HTTP1ToHTTP2Adapter(side: side, loop: loop, accessLog: accessLog, eventLoop: context.eventLoop))
            try sync.addHandler(QuiescingDownstreamConnection(loop: loop, direction: .inbound))
            sync.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}

/// The connection preface every HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
enum HTTP2Preface {
    static let bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum Verdict { case http2, http1, needMoreBytes }

    /// Decides as soon as the bytes stop matching (an HTTP/1.1 method differs within its first
    /// two bytes), or once the whole preface is there.
    static func classify(_ buffer: ByteBuffer) -> Verdict {
        let view = buffer.readableBytesView
        let count = min(view.count, bytes.count)
        guard view.prefix(count).elementsEqual(bytes.prefix(count)) else { return .http1 }
        return count == bytes.count ? .http2 : .needMoreBytes
    }
}
