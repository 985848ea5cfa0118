import NIOCore

/// The gateway's HTTPS listener after its TLS handshake: a client that negotiated ALPN `h2`
/// gets HTTP/2 (its streams pass the gateway's filters, `HTTP2StreamProxyHandler.Side.gateway`),
/// any other (ALPN `http/1.1`, or none) keeps `HTTPProxyHandler`.
final class GatewayProtocolSwitch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let role: GatewayListenerRole
    private let loop: LoopContext
    private let accessLog: AccessLog
    private let drainTimeout: TimeAmount
    private let idleTimeout: TimeAmount

    init(role: GatewayListenerRole, loop: LoopContext, accessLog: AccessLog, drainTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.role = role
        self.loop = loop
        self.accessLog = accessLog
        self.drainTimeout = drainTimeout
        self.idleTimeout = idleTimeout
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let info) = event as? TLSEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let sync = context.pipeline.syncOperations
        guard info.negotiatedProtocol == "h2" else {
            context.fireUserInboundEventTriggered(event)
            sync.removeHandler(context: context, promise: nil)
            return
        }
        do {
            if let http1 = try? sync.handler(type: HTTPProxyHandler.self) { sync.removeHandler(http1, promise: nil) }
            try HTTP2Server.configure(
                context.channel, side: .gateway(role, client: context.channel.remoteAddress?.ipAddress), loop: loop,
                accessLog: accessLog, drainTimeout: drainTimeout, idleTimeout: idleTimeout)
            sync.removeHandler(context: context, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}
