import NIOCore
import NIOPosix

/// The first handler of a connection accepted on a transparent outbound port: from its
/// original destination (read at accept) and first bytes, it installs the handler that
/// carries the connection, then steps out of the pipeline.
///
/// - Not redirected (the app uses the outbound port explicitly): the HTTP proxy, as on any
///   outbound port.
/// - A mesh service's address: HTTP (by the first bytes) through the HTTP proxy with that
///   service as the default destination (`Host` still wins when it names a service); anything
///   else as an L4 tunnel over mTLS to the service (ALPN `mesh-tcp`).
/// - Any other address: a plain TCP relay to it (`passthrough`), or closed (`registry-only`).
///
/// It holds `channelActive` back until it knows, so the installed handler sees the connection
/// start as if it had been there from the accept, followed by the bytes read so far.
final class InterceptedConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// How long a client may stay silent before its connection counts as TCP (protocols where
    /// the server speaks first: SMTP, MySQL, SSH; declare the Service `protocol: tcp` to skip
    /// the wait). Long enough that an HTTP client slowed by a loaded machine is not taken for
    /// one (100 ms was not, under a load average of 15).
    static let detectionTimeout = TimeAmount.seconds(1)

    struct Listener: Sendable {
        var unknown: SidecarConfiguration.UnknownDestinationPolicy
        var httpLog: AccessLog
        var tcpLog: AccessLog
        var timeouts: HTTPProxyHandler.Timeouts
        var drainTimeout: TimeAmount
    }

    private let originalDestination: HostPort?
    private let loop: LoopContext
    private let listener: Listener
    private var sniffer = ProtocolSniffStateMachine()
    private var service: String?
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var done = false

    init(originalDestination: HostPort?, loop: LoopContext, listener: Listener) {
        self.originalDestination = originalDestination
        self.loop = loop
        self.listener = listener
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let destination = originalDestination else {
            installHTTP(defaultDestination: nil, context: context)
            return
        }
        if let service = loop.table.addresses.service(address: destination.host, port: destination.port) {
            self.service = service
            if loop.table.addresses.isDeclaredTCP(service) {
                decided(.other, context: context)
                return
            }
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.detectionTimeout) { [weak self] in
                guard let self, !self.done else { return }
                self.decided(self.sniffer.timedOut(), context: context)
            }
            return
        }
        switch listener.unknown {
        case .registryOnly:
            loop.metrics.interceptedConnections(.refused).increment()
            done = true
            context.close(promise: nil)
        case .passthrough:
            loop.metrics.interceptedConnections(.passthrough).increment()
            passthrough(to: destination, context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if buffered == nil {
            buffered = bytes
        } else {
            buffered!.writeBuffer(&bytes)
        }
        guard !done, service != nil else { return }
        if case .decided(let result) = sniffer.bytesArrived(buffered!) { decided(result, context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        done = true
        context.fireChannelInactive()
    }

    private func decided(_ result: ProtocolSniffStateMachine.WireProtocol, context: ChannelHandlerContext) {
        guard let service, !done else { return }
        timer?.cancel()
        switch result {
        // h2c goes to the same HTTP path as HTTP/1.x, whose `OutboundProtocolDetector` tells them
        // apart by the preface (DESIGN.md "Protocols"); both get the service as the default
        // destination (`Host` or `:authority` still wins when it names a service).
        case .http1, .http2PriorKnowledge:
            loop.metrics.interceptedConnections(.meshHTTP).increment()
            installHTTP(defaultDestination: service, context: context)
        case .other:
            loop.metrics.interceptedConnections(.meshTCP).increment()
            install([HTTPProxyHandler(direction: .tcpOutbound(service: service), loop: loop, accessLog: listener.tcpLog,
                                      timeouts: listener.timeouts)], context: context)
        }
    }

    /// The outbound HTTP path as a plain outbound port has it (h2c detection, then HTTP/1.x).
    private func installHTTP(defaultDestination: String?, context: ChannelHandlerContext) {
        install([
            OutboundProtocolDetector(
                loop: loop, accessLog: listener.httpLog, drainTimeout: listener.drainTimeout,
                idleTimeout: listener.timeouts.idle, defaultDestination: defaultDestination),
            HTTPProxyHandler(
                direction: .outbound, loop: loop, accessLog: listener.httpLog, timeouts: listener.timeouts,
                defaultDestination: defaultDestination),
        ], context: context)
    }

    /// Puts `handlers` after this one, replays the connection's start and the bytes so far to
    /// them, and leaves.
    private func install(_ handlers: [any ChannelHandler], context: ChannelHandlerContext) {
        done = true
        do {
            var previous: any ChannelHandler = self
            for handler in handlers {
                try context.pipeline.syncOperations.addHandler(handler, position: .after(previous))
                previous = handler
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
        replayAndLeave(context: context)
    }

    private func replayAndLeave(context: ChannelHandlerContext) {
        if let bytes = buffered, bytes.readableBytes > 0 {
            buffered = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Outside the mesh: connect to where the app was going (as the sidecar's user, which the
    /// rules leave alone) and relay bytes; no reads from the app until then.
    private func passthrough(to destination: HostPort, context: ChannelHandlerContext) {
        done = true
        let downstream = context.channel
        downstream.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        let (inner, outer) = TCPRelayHandler.pair()
        let relays = NIOLoopBound((inner, outer), eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(relays.value.1) }
            }
            .connect(host: destination.host, port: destination.port)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let upstream):
                    guard downstream.isActive else {
                        upstream.close(promise: nil)
                        return
                    }
                    do {
                        try context.pipeline.syncOperations.addHandler(relays.value.0, position: .after(self))
                    } catch {
                        upstream.close(promise: nil)
                        context.close(promise: nil)
                        return
                    }
                    replayAndLeave(context: context)
                    upstream.flush()
                    downstream.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
                case .failure:
                    context.close(promise: nil)
                }
            }
    }
}

extension InterceptedConnectionHandler {
    /// A transparent outbound listener's child channel: reads the original destination, then
    /// this handler goes first in the pipeline.
    static func install(on channel: Channel, loops: ProxyLoops, listener: Listener) -> EventLoopFuture<Void> {
        OriginalDestination.read(from: channel).flatMapThrowing { destination in
            let handler = InterceptedConnectionHandler(
                originalDestination: destination, loop: loops.context(for: channel.eventLoop), listener: listener)
            try channel.pipeline.syncOperations.addHandler(handler)
        }
    }
}
