import NIOCore

/// The gateway's HTTPS listener after its TLS handshake: a client that negotiated ALPN `h2`
/// gets HTTP/2 (`http2` configures the channel: the gateway's streams,
/// `HTTP2StreamExchange.Side.gateway`), any other (ALPN `http/1.1`, or none) keeps
/// `HTTPProxyHandler`.
final class GatewayProtocolSwitch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let http2: (Channel) throws -> Void

    init(http2: @escaping (Channel) throws -> Void) {
        self.http2 = http2
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let info) = event as? TLSEvent else {
            return context.fireUserInboundEventTriggered(event)
        }
        let sync = context.pipeline.syncOperations
        if info.negotiatedProtocol == "h2" {
            do {
                if let http1 = try? sync.handler(type: HTTPProxyHandler.self) { sync.removeHandler(http1, promise: nil) }
                try http2(context.channel)
            } catch {
                return context.close(promise: nil)
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
        sync.removeHandler(context: context, promise: nil)
    }
}
