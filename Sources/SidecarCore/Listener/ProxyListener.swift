import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// One listening socket of the sidecar (outbound HTTP, inbound mTLS) run as a lifecycle
/// `Service`: binds on start; on graceful shutdown stops accepting, lets every connection
/// finish its current exchange (answered with `connection: close`), and closes what is
/// still open when the drain time runs out.
final class ProxyListener: Service, Sendable {
    enum Kind: Sendable {
        case outbound
        /// `outbound.transparent`: also takes connections `sidecar iptables` redirected. On an
        /// IPv4 loopback address it listens on `[::1]` at the same port too, where nftables'
        /// `redirect` sends the app's IPv6 connections.
        case transparentOutbound(unknown: SidecarConfiguration.UnknownDestinationPolicy)
        case inbound(app: HostPort, tls: TLSContextStore, appProtocol: AppProtocol = .http)
        case tcp(service: String)
        /// The front door: plain, or TLS with the gateway's server certificates (`tls`).
        case gateway(GatewayListenerRole, tls: TLSContextStore?)
    }

    let name: String
    let address: HostPort
    /// The config key `address` comes from (`outbound.listen`), named by a bind error.
    let configKey: String
    let kind: Kind
    let group: EventLoopGroup
    let loops: ProxyLoops
    let drainTimeout: TimeAmount
    let accessLog: Bool
    let timeouts: HTTPProxyHandler.Timeouts
    let logger: Logger
    let bound: ListenerAddressBox
    let readiness: ReadinessState?

    init(
        name: String, address: HostPort, configKey: String, kind: Kind, group: EventLoopGroup, loops: ProxyLoops,
        drainTimeout: TimeAmount, accessLog: Bool, timeouts: HTTPProxyHandler.Timeouts, logger: Logger,
        bound: ListenerAddressBox, readiness: ReadinessState? = nil
    ) {
        self.readiness = readiness
        self.timeouts = timeouts
        self.name = name
        self.address = address
        self.configKey = configKey
        self.kind = kind
        self.group = group
        self.loops = loops
        self.drainTimeout = drainTimeout
        self.accessLog = accessLog
        self.logger = logger
        self.bound = bound
    }

    func run() async throws {
        let loops = self.loops
        let kind = self.kind
        let logger = self.logger
        let timeouts = self.timeouts
        let drainTimeout = self.drainTimeout
        let log: AccessLog
        let direction: HTTPProxyHandler.Direction
        switch kind {
        case .outbound, .transparentOutbound:
            log = AccessLog(enabled: accessLog, direction: "outbound")
            direction = .outbound
        case .inbound(let app, _, _):
            log = AccessLog(enabled: accessLog, direction: "inbound")
            direction = .inbound(app: app)
        case .tcp(let service):
            log = AccessLog(enabled: accessLog, direction: "outbound-tcp")
            direction = .tcpOutbound(service: service)
        case .gateway(let role, _):
            log = AccessLog(enabled: accessLog, direction: "gateway")
            direction = .gateway(role)
        }
        let tcpLog = AccessLog(enabled: accessLog, direction: "outbound-tcp")
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelInitializer { channel in
                if case .transparentOutbound(let unknown) = kind {
                    let listener = InterceptedConnectionHandler.Listener(
                        unknown: unknown, httpLog: log, tcpLog: tcpLog, timeouts: timeouts, drainTimeout: drainTimeout)
                    return InterceptedConnectionHandler.install(on: channel, loops: loops, listener: listener)
                }
                return channel.eventLoop.makeCompletedFuture {
                    let context = loops.context(for: channel.eventLoop)
                    let sync = channel.pipeline.syncOperations
                    switch kind {
                    case .inbound(let app, let tls, let appProtocol):
                        try sync.addHandler(TLSHandler(context: tls.current))
                        try sync.addHandler(TLSErrorLogger(logger: logger, metrics: context.metrics))
                        try sync.addHandler(InboundProtocolSwitch(
                            loop: context, accessLog: log, app: app, appSpeaksHTTP2: appProtocol.speaksHTTP2,
                            drainTimeout: drainTimeout, idleTimeout: timeouts.idle))
                    case .outbound:
                        // HTTP/1.1 and h2c with prior knowledge on the same port.
                        try sync.addHandler(OutboundProtocolDetector(
                            loop: context, accessLog: log, drainTimeout: drainTimeout, idleTimeout: timeouts.idle))
                    case .gateway(let role, let tls?):
                        // HTTP/1.1, or HTTP/2 for a client that negotiated ALPN h2.
                        try sync.addHandler(TLSHandler(context: tls.current))
                        try sync.addHandler(TLSErrorLogger(logger: logger, metrics: context.metrics, direction: .gateway))
                        try sync.addHandler(GatewayProtocolSwitch { channel in
                            try HTTP2Server.configure(
                                channel, side: .gateway(role, client: channel.remoteAddress?.ipAddress), loop: context,
                                accessLog: log, drainTimeout: drainTimeout, idleTimeout: timeouts.idle)
                        })
                    case .gateway(let role, nil):
                        // HTTP/1.1 and h2c with prior knowledge on the plain listener.
                        try sync.addHandler(OutboundProtocolDetector(
                            loop: context, accessLog: log, drainTimeout: drainTimeout, idleTimeout: timeouts.idle, gateway: role))
                    case .tcp, .transparentOutbound:  // transparent: its own pipeline, above
                        break
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPProxyHandler(direction: direction, loop: context, accessLog: log, timeouts: timeouts))
                }
            }
        let address = self.address
        let channel = try await ListenerBindError.binding(address, key: configKey) {
            try await bootstrap.bind(host: address.host, port: address.port).get()
        }
        let local = channel.localAddress
        bound.set(local?.port ?? address.port)
        readiness?.listenerBound()
        logger.info("listening", metadata: ["listener": "\(name)", "address": "\(local.map { "\($0)" } ?? "?")"])
        let ipv6 = await bindIPv6Loopback(bootstrap, port: local?.port ?? address.port)

        let readiness = self.readiness
        // Graceful shutdown drains; cancellation (another service of the group failed) closes too.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                readiness?.startDraining()
                ipv6?.close(promise: nil)
                channel.close(promise: nil)
            }
        } onCancel: {
            ipv6?.close(promise: nil)
            channel.close(promise: nil)
        }
        // Drain: the socket no longer accepts; let open connections finish.
        try? await channel.closeFuture.get()
        await loops.drain(timeout: drainTimeout)
        logger.info("stopped", metadata: ["listener": "\(name)"])
    }

    /// A transparent outbound on 127.x also at `[::1]:port`; nil for other listeners, or when
    /// this host has no IPv6 loopback (then only IPv4 is intercepted, as the log says).
    private func bindIPv6Loopback(_ bootstrap: ServerBootstrap, port: Int) async -> Channel? {
        guard case .transparentOutbound = kind, address.host.hasPrefix("127.") else { return nil }
        do {
            let channel = try await bootstrap.bind(host: "::1", port: port).get()
            logger.info("listening", metadata: ["listener": "\(name)", "address": "[::1]:\(port)"])
            return channel
        } catch {
            logger.notice("no IPv6 loopback: intercepted IPv6 connections will not reach the outbound",
                          metadata: ["listener": "\(name)", "error": "\(error)"])
            return nil
        }
    }
}

/// Logs inbound (or gateway) handshake failures (plain bytes, wrong CA, expired) and passes them
/// on. Leaves the pipeline once the handshake completed: every request's reads would otherwise
/// pass through it.
final class TLSErrorLogger: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let logger: Logger
    let metrics: SidecarMetrics
    let direction: TrafficDirection
    init(logger: Logger, metrics: SidecarMetrics, direction: TrafficDirection = .inbound) {
        self.logger = logger
        self.metrics = metrics
        self.direction = direction
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? TLSError {
            metrics.tlsHandshakeErrors(direction, error.reason).increment()
            logger.notice("\(direction.rawValue) TLS refused", metadata: ["reason": "\(error.reason.rawValue)", "detail": "\(error.detail)"])
        }
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case .handshakeCompleted = event as? TLSEvent {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
