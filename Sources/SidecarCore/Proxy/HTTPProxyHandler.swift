import NIOCore

/// Proxies HTTP/1.1 on one downstream connection by forwarding bytes: it parses only each
/// request head's framing, rewrites the head (hop-by-hop headers, request id, trace context,
/// caller identity), then relays body bytes as `ByteBuffer` slices to an upstream connection
/// on the same event loop, and the upstream's response back the same way. One exchange at a
/// time; pipelined requests wait in the cumulation buffer with reads paused.
///
/// Outbound (the app's proxy port) routes by `Host` or absolute-form target to a destination
/// service and opens mTLS to one of its sidecars; inbound (after `TLSHandler`) authorizes the
/// verified caller and hands the request to the local app. Errors become responses in one
/// place (`ProxyError`). Flushes once per read batch in both directions.
///
/// Read in request order: this file (state, downstream events, head/idle timer, L4 tunnels),
/// `HTTPProxyHandler+Request.swift` (target normalization, the `RequestFilters` chain of the
/// direction, head rewrite, pool lease, request body), `Filters/` (each policy step) and
/// `HTTPProxyHandler+Response.swift` (response relay, retries and timeouts, endings).
final class HTTPProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Direction {
        case outbound
        case inbound(app: HostPort)
        /// `outbound.tcp`: every connection is carried as bytes to `service` (ALPN `mesh-tcp`).
        case tcpOutbound(service: String)
        /// The mesh's front door: external HTTP(S) routed by GatewayRoutes (`RequestFilters.gateway`).
        case gateway(GatewayListenerRole)
    }

    /// The ALPN protocol that marks a sidecar-to-sidecar connection as an L4 tunnel.
    static let tunnelALPN = "mesh-tcp"

    enum Phase {
        case idle
        case connecting
        case forwardingRequest
        case awaitingResponse
        case tunnel
        case closed
    }

    /// How long a downstream connection may take to send a request head, pause while sending
    /// a request body, and stay idle between requests.
    struct Timeouts: Sendable {
        var requestHead: TimeAmount = .seconds(10)
        var requestBodyIdle: TimeAmount = .seconds(30)
        var idle: TimeAmount = .hours(1)
    }

    let direction: Direction
    /// Outbound, for a connection intercepted on its way to a service's address: the service a
    /// request goes to when its `Host` names none (`InterceptedConnectionHandler`).
    let defaultDestination: String?
    let loop: LoopContext
    let accessLog: AccessLog
    let timeouts: Timeouts
    var headTimer: Scheduled<Void>?
    var headTimerFiresAt: NIODeadline?
    /// The lazy timer over the current exchange's route and try deadlines.
    var deadlineTimer: Scheduled<Void>?
    var deadlineTimerFiresAt: NIODeadline?
    /// Whether the connection waits for a (next) request head, since when, and whether part of it came.
    var waiting = false
    var waitingForHead = false
    var waitingSince = NIODeadline.uptimeNanoseconds(0)
    var context: ChannelHandlerContext?
    /// The channel's allocator, read once (each `context.channel.allocator` costs a pipeline
    /// and a channel getter with their retains, several times per request).
    var allocator = ByteBufferAllocator()
    var parser = HTTPHeadParser()
    var cumulation: ByteBuffer?
    var phase = Phase.idle
    var exchange: ProxyExchange?
    var callerService: String?
    /// Gateway: the downstream client's IP address.
    var clientAddress: String?
    var pendingRead = false
    var upstreamNeedsFlush = false
    var upstreamWritable = true
    /// Inbound: the caller's request metrics, resolved once per connection at handshake.
    var inboundMetrics: RequestMetricsHandle?
    var connectionGauge: Gauge?

    init(
        direction: Direction, loop: LoopContext, accessLog: AccessLog, timeouts: Timeouts = Timeouts(),
        defaultDestination: String? = nil
    ) {
        self.direction = direction
        self.defaultDestination = defaultDestination
        self.loop = loop
        self.accessLog = accessLog
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        loop.connectionOpened(self)
        let gauge = loop.metrics.connectionsOpen(direction.trafficDirection)
        gauge.increment()
        connectionGauge = gauge
        if case .tcpOutbound = direction { return }
        armHeadTimer(context: context)
    }

    func channelActive(context: ChannelHandlerContext) {
        if case .tcpOutbound(let service) = direction { startTunnel(toService: service, context: context) }
        context.fireChannelActive()
    }

    /// Outbound L4: route the whole connection to an endpoint of `service`.
    func startTunnel(toService service: String, context: ChannelHandlerContext) {
        let exchange = ProxyExchange(
            method: .other, methodName: "TCP", authority: service, path: "", requestID: RequestIdentifiers.requestID(using: &loop.random),
            peer: service, closeAfterResponse: true, framing: .none, start: context.eventLoop.now)
        self.exchange = exchange
        exchange.wireProtocol = .tcp
        exchange.tunnelMetrics = loop.metrics.requests.handle(direction: .outbound, peer: service)
        guard let destination = loop.table.destinations[service] else {
            exchange.errorCause = .noRoute
            record(exchange, status: 0)
            context.close(promise: nil)
            return
        }
        guard let endpoint = loop.pickEndpoint(destination, rule: RouteRule()) else {
            exchange.errorCause = .noHealthyEndpoint
            record(exchange, status: 0)
            context.close(promise: nil)
            return
        }
        lease(exchange, key: .init(address: endpoint.address, service: service, tunnel: true),
              connectTimeout: destination.policy.connectTimeout.timeAmount, context: context)
    }

    /// Inbound L4: the caller asked for a tunnel; authorize it and connect to the app.
    func acceptTunnel(app: HostPort, context: ChannelHandlerContext) {
        let exchange = ProxyExchange(
            method: .other, methodName: "TCP", authority: "", path: "", requestID: RequestIdentifiers.requestID(using: &loop.random),
            peer: callerService ?? "unknown", closeAfterResponse: true, framing: .none, start: context.eventLoop.now)
        self.exchange = exchange
        exchange.wireProtocol = .tcp
        cancelHeadTimer()
        guard loop.table.allows(caller: callerService, method: "TCP", path: "/") else {
            exchange.errorCause = .forbidden
            loop.metrics.authzDenied(caller: callerService ?? "unknown").increment()
            record(exchange, status: 0)
            phase = .closed
            context.close(promise: nil)
            return
        }
        lease(exchange, key: .init(address: app, service: nil, tunnel: true), connectTimeout: .seconds(5), context: context)
    }

    /// Between requests the idle timer runs; once a head has started, the (shorter) head timer:
    /// a client that trickles a head (slowloris) gets 408 and is closed.
    ///
    /// The timer is lazy: one scheduled task whose firing re-checks the current deadline, so a
    /// busy keep-alive connection schedules nothing per request.
    func armHeadTimer(context: ChannelHandlerContext) {
        let partial = (cumulation?.readableBytes ?? 0) > 0
        if !waiting || partial != waitingForHead {
            waiting = true
            waitingForHead = partial
            waitingSince = context.eventLoop.now
        }
        let deadline = waitingSince + (partial ? timeouts.requestHead : timeouts.idle)
        if let firesAt = headTimerFiresAt, firesAt <= deadline { return }  // it will re-check then
        headTimer?.cancel()
        scheduleHeadTimer(at: deadline, context: context)
    }

    func scheduleHeadTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        headTimerFiresAt = deadline
        headTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            guard let context = self.context else { return }
            self.headTimer = nil
            self.headTimerFiresAt = nil
            guard self.waiting, self.phase == .idle else { return }  // re-armed when the wait resumes
            let limit = self.waitingForHead ? self.timeouts.requestHead : self.timeouts.idle
            let due = self.waitingSince + limit
            if context.eventLoop.now < due {
                self.scheduleHeadTimer(at: due, context: context)
            } else if !self.waitingForHead {
                self.phase = .closed
                context.close(promise: nil)
            } else {
                self.cumulation = nil
                self.respondWithoutExchange(
                    ProxyError(.badRequest, "request head not complete within \(limit.nanoseconds / 1_000_000) ms", status: 408),
                    context: context)
            }
        }
    }

    /// A request is in flight: the wait ends (the task, if any, finds nothing to do).
    func cancelHeadTimer() {
        waiting = false
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadlineTimer?.cancel()
        deadlineTimer = nil
        headTimer?.cancel()
        headTimer = nil
        loop.connectionClosed(self)
        connectionGauge?.decrement()
        connectionGauge = nil
        self.context = nil
    }

    /// Graceful drain: close now when idle, else after the current response (with `connection: close`).
    func beginDrain() {
        guard let context else { return }
        if let exchange {
            exchange.closeAfterResponse = true
        } else if phase == .idle, (cumulation?.readableBytes ?? 0) == 0 {
            phase = .closed
            context.close(promise: nil)
        }
    }

    // MARK: Downstream events

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            callerService = info.peerIdentity?.serviceName
            inboundMetrics = loop.metrics.requests.handle(direction: .inbound, peer: callerService ?? "unknown")
            if info.negotiatedProtocol == Self.tunnelALPN, case .inbound(let app) = direction {
                acceptTunnel(app: app, context: context)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if cumulation == nil || cumulation!.readableBytes == 0 {
            cumulation = bytes
        } else {
            cumulation!.writeBuffer(&bytes)
        }
        processInput(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushUpstream()
    }

    func read(context: ChannelHandlerContext) {
        if wantsDownstreamBytes {
            context.read()
        } else {
            pendingRead = true
        }
    }

    var wantsDownstreamBytes: Bool {
        switch phase {
        // Between requests only a partial head is buffered, and the parser refuses one that
        // reaches its limit: keep reading so an oversized head gets 431, not a stall.
        case .idle: return true
        // Keep reading while little is buffered: switching read interest off and on per request
        // costs two epoll_ctl calls; pipelined bytes wait in the buffer, bounded at 64 KiB.
        case .connecting, .awaitingResponse: return (cumulation?.readableBytes ?? 0) < 64 * 1024
        case .forwardingRequest, .tunnel: return upstreamWritable
        case .closed: return false
        }
    }

    func resumeReadingIfWanted() {
        guard pendingRead, wantsDownstreamBytes, let context else { return }
        pendingRead = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.upstream?.setReadsPaused(!context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        waiting = false
        headTimer?.cancel()
        headTimer = nil
        if let exchange {
            exchange.cancelTimers()
            // The downstream went away first: a closed tunnel, or an aborted request (status 0).
            record(exchange, status: exchange.poolKey?.tunnel == true ? 0 : exchange.status)
            abandonTry(exchange)
            self.exchange = nil
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // TLS failures are counted by the listener; a broken downstream just closes.
        context.close(promise: nil)
    }
}

extension HTTPProxyHandler: UpstreamOwner, DownstreamConnection, RemovableChannelHandler {}

extension HTTPProxyHandler.Direction {
    var trafficDirection: TrafficDirection {
        switch self {
        case .outbound, .tcpOutbound: return .outbound
        case .inbound: return .inbound
        case .gateway: return .gateway
        }
    }

    /// Whether requests go to mesh services by a route (and so get its retries and response rewrites).
    var routesToMesh: Bool {
        switch self {
        case .outbound, .gateway: return true
        case .inbound, .tcpOutbound: return false
        }
    }
}
