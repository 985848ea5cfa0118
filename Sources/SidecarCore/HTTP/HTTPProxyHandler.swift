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
final class HTTPProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Direction {
        case outbound
        case inbound(app: HostPort)
        /// `outbound.tcp`: every connection is carried as bytes to `service` (ALPN `mesh-tcp`).
        case tcpOutbound(service: String)
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

    /// How long a downstream connection may take to send a request head, and stay idle.
    struct Timeouts: Sendable {
        var requestHead: TimeAmount = .seconds(10)
        var idle: TimeAmount = .hours(1)
    }

    private let direction: Direction
    private let loop: ProxyLoopState
    private let accessLog: AccessLog
    private let timeouts: Timeouts
    private var headTimer: Scheduled<Void>?
    private var headTimerFiresAt: NIODeadline?
    /// Whether the connection waits for a (next) request head, since when, and whether part of it came.
    private var waiting = false
    private var waitingForHead = false
    private var waitingSince = NIODeadline.now()
    private var context: ChannelHandlerContext?
    private var parser = HTTPHeadParser()
    private var cumulation: ByteBuffer?
    private var phase = Phase.idle
    private var exchange: ProxyExchange?
    private var callerService: String?
    private var pendingRead = false
    private var upstreamNeedsFlush = false
    private var upstreamWritable = true
    /// Inbound: the caller's request metrics, resolved once per connection at handshake.
    private var inboundMetrics: RequestMetricsHandle?
    private var connectionGauge: Gauge?

    init(direction: Direction, loop: ProxyLoopState, accessLog: AccessLog, timeouts: Timeouts = Timeouts()) {
        self.direction = direction
        self.loop = loop
        self.accessLog = accessLog
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
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
    private func startTunnel(toService service: String, context: ChannelHandlerContext) {
        let exchange = ProxyExchange(
            method: .other, methodName: "TCP", authority: service, path: "", requestID: RequestIdentifiers.requestID(using: &loop.random),
            peer: service, closeAfterResponse: true, framing: .none)
        self.exchange = exchange
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
    private func acceptTunnel(app: HostPort, context: ChannelHandlerContext) {
        let exchange = ProxyExchange(
            method: .other, methodName: "TCP", authority: "", path: "", requestID: RequestIdentifiers.requestID(using: &loop.random),
            peer: callerService ?? "unknown", closeAfterResponse: true, framing: .none)
        self.exchange = exchange
        cancelHeadTimer()
        guard Authorizer.allows(loop.table.authorization, caller: callerService, method: "TCP", path: "/") else {
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
    private func armHeadTimer(context: ChannelHandlerContext) {
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

    private func scheduleHeadTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        headTimerFiresAt = deadline
        headTimer = context.eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self, let context = self.context else { return }
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
    private func cancelHeadTimer() {
        waiting = false
    }

    func handlerRemoved(context: ChannelHandlerContext) {
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

    private var wantsDownstreamBytes: Bool {
        switch phase {
        // Keep reading while little is buffered: switching read interest off and on per request
        // costs two epoll_ctl calls; pipelined bytes wait in the buffer, bounded at 64 KiB.
        case .idle, .connecting, .awaitingResponse: return (cumulation?.readableBytes ?? 0) < 64 * 1024
        case .forwardingRequest, .tunnel: return upstreamWritable
        case .closed: return false
        }
    }

    private func resumeReadingIfWanted() {
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
            if let upstream = exchange.upstream {
                upstream.owner = nil
                upstream.channel?.close(promise: nil)
                if let address = exchange.upstreamAddress { loop.requestFinished(address) }
            }
            self.exchange = nil
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // TLS failures are counted by the listener; a broken downstream just closes.
        context.close(promise: nil)
    }

    // MARK: Request side

    private func processInput(context: ChannelHandlerContext) {
        while true {
            switch phase {
            case .idle:
                guard var buffer = cumulation, buffer.readableBytes > 0 else { return }
                let head: HTTPRawRequestHead?
                do {
                    head = try parser.parseRequest(&buffer)
                } catch {
                    cumulation = nil
                    respondWithoutExchange(ProxyError.badRequest(error), context: context)
                    return
                }
                cumulation = buffer
                guard let head else {
                    armHeadTimer(context: context)
                    return
                }
                cancelHeadTimer()
                parser = HTTPHeadParser()
                startExchange(head, context: context)
            case .forwardingRequest:
                forwardRequestBody(context: context)
                if phase == .forwardingRequest { return }
            case .tunnel:
                if let bytes = cumulation, bytes.readableBytes > 0, let upstream = exchange?.upstream?.channel {
                    cumulation = nil
                    exchange?.bytesReceived += bytes.readableBytes
                    upstream.write(bytes, promise: nil)
                    upstreamNeedsFlush = true
                }
                return
            case .connecting, .awaitingResponse, .closed:
                return
            }
        }
    }

    private func startExchange(_ head: HTTPRawRequestHead, context: ChannelHandlerContext) {
        let requestID = head.headers.firstValue(named: "x-request-id") ?? RequestIdentifiers.requestID(using: &loop.random)
        var target = head.target
        var authority = head.headers.firstValue(named: "host") ?? ""
        if target.hasPrefix("http://") {
            let rest = target.dropFirst(7)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            authority = String(rest[..<slash])
            target = slash == rest.endIndex ? "/" : String(rest[slash...])
        }
        let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
        let peer: String
        switch direction {
        case .outbound: peer = String(authority.split(separator: ":").first ?? "")
        case .inbound: peer = callerService ?? "unknown"
        case .tcpOutbound(let service): peer = service
        }
        let exchange = ProxyExchange(
            method: head.method, methodName: head.methodName, authority: authority, path: path,
            requestID: requestID, peer: peer, closeAfterResponse: !head.framing.keepAlive || loop.draining,
            framing: head.framing.body)
        exchange.upgradeRequested = head.framing.upgrade
        self.exchange = exchange

        if head.method == .CONNECT || target.hasPrefix("https://") {
            fail(exchange, ProxyError(.badRequest, "CONNECT and https:// targets are not proxied; send plain HTTP"),
                 context: context)
            return
        }
        var extra: [HTTPHeaderLine] = []
        if !head.headers.contains("x-request-id") {
            extra.append(try! HTTPHeaderLine(name: "x-request-id", value: requestID))
        }
        if !head.headers.contains("traceparent") {
            extra.append(try! HTTPHeaderLine(name: "traceparent", value: RequestIdentifiers.traceparent(using: &loop.random)))
        }
        var removed: [String] = []
        var rewritten = context.channel.allocator.buffer(capacity: head.byteCount + 160)
        switch direction {
        case .outbound:
            let hops = head.headers.firstValue(named: "x-mesh-hops").flatMap { Int($0) } ?? 0
            guard hops < 8 else {
                fail(exchange, ProxyError(.loopDetected, "request crossed \(hops) sidecars; refusing a routing loop"),
                     context: context)
                return
            }
            guard let destination = loop.table.destination(forHost: Substring(authority)) else {
                fail(exchange, ProxyError(.noRoute, "no service \"\(peer)\" in the mesh"), context: context)
                return
            }
            guard let ruleIndex = destination.ruleIndex(path: Substring(path), method: head.methodName, header: { head.headers.firstValue(named: $0) })
            else {
                fail(exchange, ProxyError(.noRoute, "no route of \(destination.service) matches \(head.methodName) \(path)"),
                     context: context)
                return
            }
            let rule = destination.rules[ruleIndex]
            exchange.route = (destination, rule)
            removed = ["x-mesh-hops"] + rule.requestHeaders.remove
            extra.append(try! HTTPHeaderLine(name: "x-mesh-hops", value: String(hops + 1)))
            for (name, value) in rule.requestHeaders.set.sorted(by: { $0.key < $1.key }) {
                if let line = try? HTTPHeaderLine(name: name, value: value) { extra.append(line) }
            }
            HTTPHeadWriter(removing: removed, relayUpgrade: true).write(head, target: target, adding: extra, into: &rewritten)
            exchange.rewrittenHead = rewritten
            exchange.timeout = context.eventLoop.scheduleTask(in: rule.timeout.timeAmount) { [weak self] in
                self?.requestTimedOut(exchange, after: rule.timeout)
            }
            if let limit = rule.rateLimit,
                case .limited = loop.takeRuleToken(service: destination.service, ruleIndex: ruleIndex, limit: limit, now: .now())
            {
                var error = ProxyError(.rateLimited, "\(destination.service): this route allows \(limit.requestsPerSecond) requests per second")
                error.retryAfter = 1
                fail(exchange, error, context: context)
                return
            }
            let admission = loop.withResilience(destination) { $0.breaker.tryAcquireRequest() }
            loop.publishBreakerState(service: destination.service)
            if case .rejected(let resource) = admission {
                loop.metrics.peer(destination.service).circuitBreakerRejections.increment()
                var error = ProxyError(.circuitOpen, "\(destination.service): circuit breaker \(resource) reached")
                error.fallback = destination.policy.fallback
                fail(exchange, error, context: context)
                return
            }
            exchange.holdsBreakerRequest = true
            prepareReplay(exchange, head: head, rewritten: rewritten, rule: rule, destination: destination, context: context)
            if let abort = rule.fault?.abort, loop.chance(abort.percent) {
                fail(exchange, ProxyError(.faultInjected, "aborted by the route's fault injection", status: abort.status),
                     context: context)
                return
            }
            mirrorIfBuffered(exchange)
            if let delay = rule.fault?.delay, loop.chance(delay.percent) {
                // On a timer: the loop serves other requests meanwhile.
                phase = .connecting
                context.eventLoop.scheduleTask(in: delay.duration.timeAmount) { [weak self] in
                    guard let self, self.exchange === exchange, let context = self.context else { return }
                    self.connectOutbound(exchange, context: context)
                }
                return
            }
            connectOutbound(exchange, context: context)
        case .inbound(let app):
            guard Authorizer.allows(loop.table.authorization, caller: callerService, method: head.methodName, path: Substring(path))
            else {
                loop.metrics.authzDenied(caller: callerService ?? "unknown").increment()
                fail(exchange, ProxyError(.forbidden, "\(callerService ?? "an unidentified caller") may not \(head.methodName) \(path)"),
                     context: context)
                return
            }
            if case .limited(let wait) = loop.takeInboundToken(caller: callerService ?? "unknown", now: .now()) {
                var error = ProxyError(.rateLimited, "\(loop.table.localService) is over its request rate")
                error.retryAfter = TokenBucket.Decision.limited(retryAfter: wait).retryAfterSeconds
                fail(exchange, error, context: context)
                return
            }
            extra.append(try! HTTPHeaderLine(name: "x-mesh-caller", value: callerService ?? "unknown"))
            HTTPHeadWriter(removing: ["x-mesh-caller"], relayUpgrade: true).write(head, adding: extra, into: &rewritten)
            exchange.rewrittenHead = rewritten
            lease(exchange, key: .init(address: app, service: nil), connectTimeout: .seconds(5), context: context)
        case .tcpOutbound:
            break
        }
    }

    /// Every routed request may be sent again (the retry state machine decides when) and
    /// copied to the rule's mirror: keep the rewritten head, and a copy of the body when it
    /// can fit the replay limit (a declared length over it is streamed without one).
    private func prepareReplay(
        _ exchange: ProxyExchange, head: HTTPRawRequestHead, rewritten: ByteBuffer, rule: RouteRule,
        destination: RouteTable.Destination, context: ChannelHandlerContext
    ) {
        let declared: Int?
        switch head.framing.body {
        case .none: declared = 0
        case .contentLength(let length): declared = length
        default: declared = nil
        }
        let retry = RetryStateMachine(
            policy: rule.retries,
            request: .init(method: head.method, hasIdempotencyKey: head.headers.contains("idempotency-key"),
                           contentLength: declared),
            deadline: exchange.start + rule.timeout.timeAmount)
        exchange.retry = retry
        exchange.retryHead = rewritten
        exchange.mirrorPending = !head.framing.upgrade && MirrorDecision.shouldMirror(rule.mirror, using: &loop.random)
        let limit = RetryStateMachine.maxReplayBodyBytes
        if !exchange.requestComplete, retry.shouldBufferBody || exchange.mirrorPending, (declared ?? 0) <= limit {
            exchange.replayBody = context.channel.allocator.buffer(capacity: declared ?? 4096)
        }
        loop.retryBudgetRequestStarted(destination)
    }

    /// Sends the fire-and-forget copy once the whole request is buffered; a body that was not
    /// buffered (over the limit) is not mirrored, only counted.
    private func mirrorIfBuffered(_ exchange: ProxyExchange) {
        guard exchange.mirrorPending, exchange.requestComplete, let (destination, rule) = exchange.route,
            let mirror = rule.mirror, let head = exchange.retryHead
        else { return }
        exchange.mirrorPending = false
        guard exchange.bodyIsBuffered else {
            loop.metrics.mirrorRequests(peer: destination.service, result: .skipped).increment()
            return
        }
        exchange.mirrored = MirrorExchange.send(
            head: head, body: exchange.replayBody, method: exchange.method, subset: mirror.subset,
            destination: destination, timeout: rule.timeout.timeAmount, loop: loop)
    }

    private func connectOutbound(_ exchange: ProxyExchange, context: ChannelHandlerContext) {
        guard let (destination, rule) = exchange.route else { return }
        guard let endpoint = loop.pickEndpoint(destination, rule: rule, excluding: exchange.triedEndpoints) else {
            var error = ProxyError(.noHealthyEndpoint, "service \(destination.service) has no healthy endpoint")
            error.fallback = destination.policy.fallback
            fail(exchange, error, context: context)
            return
        }
        exchange.triedEndpoints.insert(endpoint.address)
        exchange.avoidedEjected = max(exchange.avoidedEjected, loop.ejectedEndpoints(destination.service))
        lease(exchange, key: .init(address: endpoint.address, service: destination.service),
              connectTimeout: destination.policy.connectTimeout.timeAmount, context: context)
    }

    private func lease(
        _ exchange: ProxyExchange, key: ProxyLoopState.PoolKey, connectTimeout: TimeAmount, context: ChannelHandlerContext
    ) {
        phase = .connecting
        exchange.poolKey = key
        exchange.attempts += 1
        exchange.tryEpoch &+= 1
        let epoch = exchange.tryEpoch
        loop.lease(key, connectTimeout: connectTimeout).whenComplete { [weak self] result in
            guard let self, self.exchange === exchange, exchange.tryEpoch == epoch, self.phase == .connecting,
                let context = self.context
            else {
                if case .success(let upstream) = result { upstream.channel?.close(promise: nil) }
                return
            }
            switch result {
            case .success(let upstream):
                self.connected(upstream, exchange: exchange, context: context)
            case .failure(let error):
                let proxyError = error as? ProxyError ?? ProxyError(.connectFailed, "\(error)")
                if let service = key.service, proxyError.cause == .connectFailed {
                    self.loop.recordOutcome(.connectFailure, service: service, address: key.address)
                }
                // A failed connect never reached the upstream: always safe to try another endpoint.
                if proxyError.cause == .connectFailed, let route = exchange.route,
                    exchange.attempts < max(route.rule.retries.attempts, 1),
                    route.destination.endpoints.count > exchange.triedEndpoints.count
                {
                    exchange.retryReasons.append(.connectFailure)
                    self.connectOutbound(exchange, context: context)
                } else {
                    self.fail(exchange, proxyError, context: context)
                }
            }
        }
    }

    private func connected(_ upstream: UpstreamHandler, exchange: ProxyExchange, context: ChannelHandlerContext) {
        if exchange.poolKey?.tunnel == true {
            exchange.upstream = upstream
            upstream.beginTunnel(owner: self)
            upstream.setReadsPaused(!context.channel.isWritable)
            upstreamWritable = upstream.channel?.isWritable ?? true
            phase = .tunnel
            processInput(context: context)
            flushUpstream()
            resumeReadingIfWanted()
            return
        }
        guard let channel = upstream.channel, let head = exchange.rewrittenHead else { return }
        exchange.upstream = upstream
        exchange.rewrittenHead = nil
        upstream.begin(owner: self, method: exchange.method)
        upstream.setReadsPaused(!context.channel.isWritable)
        if let address = exchange.upstreamAddress { loop.requestStarted(address) }
        upstreamWritable = channel.isWritable
        channel.write(head, promise: nil)
        // A retry: first the body bytes an earlier try forwarded, then whatever still arrives.
        if let body = exchange.replayBody, body.readableBytes > 0 { channel.write(body, promise: nil) }
        upstreamNeedsFlush = true
        phase = exchange.requestComplete ? .awaitingResponse : .forwardingRequest
        if exchange.requestComplete { armTryTimer(exchange, context: context) }
        processInput(context: context)
        flushUpstream()
        resumeReadingIfWanted()
    }

    private func forwardRequestBody(context: ChannelHandlerContext) {
        guard let exchange, let channel = exchange.upstream?.channel else { return }
        guard var buffer = cumulation, buffer.readableBytes > 0 else { return }
        do {
            let (body, complete) = try exchange.requestFramer.readBody(from: &buffer)
            cumulation = buffer
            if let body, body.readableBytes > 0 {
                exchange.bytesReceived += body.readableBytes
                exchange.keepForReplay(body)
                channel.write(body, promise: nil)
                upstreamNeedsFlush = true
            }
            if complete {
                exchange.requestComplete = true
                phase = .awaitingResponse
                armTryTimer(exchange, context: context)
                mirrorIfBuffered(exchange)
            }
        } catch {
            exchange.upstream?.owner = nil
            channel.close(promise: nil)
            exchange.closeAfterResponse = true
            fail(exchange, ProxyError.badRequest(error), context: context)
        }
    }

    private func flushUpstream() {
        guard upstreamNeedsFlush else { return }
        upstreamNeedsFlush = false
        exchange?.upstream?.channel?.flush()
    }

    // MARK: Response side (called by UpstreamHandler on this loop)

    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool) {
        guard let context, let exchange else { return }
        var buffer = context.channel.allocator.buffer(capacity: head.byteCount + 64)
        guard final else {
            HTTPHeadWriter().write(head, into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: nil)
            return
        }
        if let service = exchange.poolKey?.service, let address = exchange.upstreamAddress, exchange.poolKey?.tunnel == false {
            loop.recordOutcome(.status(head.status), service: service, address: address)
        }
        exchange.tryTimer?.cancel()
        exchange.tryTimer = nil
        if head.status >= 500, retryElsewhere(exchange, after: .status(head.status), context: context) { return }
        exchange.responseStarted = true
        exchange.status = head.status
        if head.framing.body == .untilClose { exchange.closeAfterResponse = true }
        var extra: [HTTPHeaderLine] = []
        var removed: [String] = []
        if case .outbound = direction, let rule = exchange.route?.rule {
            removed = rule.responseHeaders.remove
            for (name, value) in rule.responseHeaders.set.sorted(by: { $0.key < $1.key }) {
                if let line = try? HTTPHeaderLine(name: name, value: value) { extra.append(line) }
            }
        }
        let tunnel = head.framing.body == .tunnel
        if exchange.closeAfterResponse && !tunnel {
            extra.append(try! HTTPHeaderLine(name: "connection", value: "close"))
        }
        HTTPHeadWriter(removing: removed, relayUpgrade: tunnel).write(head, adding: extra, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        if tunnel {
            exchange.cancelTimers()
            phase = .tunnel
            processInput(context: context)
            flushUpstream()
            resumeReadingIfWanted()
        }
    }

    func upstreamBody(_ body: ByteBuffer) {
        guard let context, let exchange else { return }
        exchange.bytesSent += body.readableBytes
        context.write(wrapOutboundOut(body), promise: nil)
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        upstreamWritable = writable
        if writable { resumeReadingIfWanted() }
    }

    func upstreamResponseEnd(reusable: Bool) {
        guard let context, let exchange else { return }
        exchange.cancelTimers()
        if let address = exchange.upstreamAddress { loop.requestFinished(address) }
        if let upstream = exchange.upstream, let key = exchange.poolKey {
            if reusable && exchange.requestComplete && phase != .tunnel {
                loop.release(upstream, key: key)
            } else {
                upstream.owner = nil
                upstream.channel?.close(promise: nil)
            }
        }
        finishExchange(exchange, status: exchange.status, context: context)
    }

    func upstreamFailed(_ error: ProxyError, responseStarted: Bool) {
        guard let context, let exchange else { return }
        if !responseStarted, let service = exchange.poolKey?.service, let address = exchange.upstreamAddress {
            loop.recordOutcome(.reset, service: service, address: address)
            if error.cause == .upstreamReset, retryElsewhere(exchange, after: .reset, context: context) { return }
        }
        exchange.cancelTimers()
        if let address = exchange.upstreamAddress { loop.requestFinished(address) }
        exchange.upstream = nil
        if responseStarted || exchange.poolKey?.tunnel == true {
            exchange.errorCause = error.cause
            record(exchange, status: exchange.status)
            self.exchange = nil
            context.close(promise: nil)
        } else {
            if !exchange.requestComplete { exchange.closeAfterResponse = true }
            fail(exchange, error, context: context)
        }
    }

    /// Drops the current try and sends the request again (to another endpoint when there is
    /// one) after the backoff, when the retry policy, idempotency and the budget allow it.
    private func retryElsewhere(
        _ exchange: ProxyExchange, after failure: RetryStateMachine.Failure, context: ChannelHandlerContext
    ) -> Bool {
        guard var retry = exchange.retry, let destination = exchange.route?.destination, let head = exchange.retryHead
        else { return false }
        let address = exchange.upstreamAddress
        let action = loop.decideRetry(
            &retry, after: failure, from: address, destination: destination, holdsRetrySlot: &exchange.holdsBreakerRetry)
        exchange.retry = retry
        switch action {
        case .retry: exchange.retryReasons.append(failure)
        case .giveUp(let reason): exchange.retryStopped = reason.rawValue
        case .budgetExhausted: exchange.retryStopped = "budget-exhausted"
        }
        guard case .retry(let backoff, let exclude) = action else { return false }
        abandonTry(exchange)
        if let exclude { exchange.triedEndpoints.insert(exclude) }
        exchange.rewrittenHead = head
        phase = .connecting
        context.eventLoop.scheduleTask(in: backoff) { [weak self] in
            guard let self, self.exchange === exchange, let context = self.context else { return }
            self.connectOutbound(exchange, context: context)
        }
        return true
    }

    /// Drops the try in flight: its connection is closed (never reused, the response may still
    /// come), its timer stopped, and a lease still pending for it will be discarded.
    private func abandonTry(_ exchange: ProxyExchange) {
        exchange.tryEpoch &+= 1
        exchange.tryTimer?.cancel()
        exchange.tryTimer = nil
        if let upstream = exchange.upstream {
            upstream.owner = nil
            upstream.channel?.close(promise: nil)
            if let address = exchange.upstreamAddress { loop.requestFinished(address) }
            exchange.upstream = nil
        }
    }

    /// Starts the try's `perTryTimeout` timer once the whole request has gone upstream on this
    /// try (as Envoy: it bounds the wait for the response, not a slow upload), when the route
    /// sets one shorter than what is left of the route timeout (which bounds all tries itself).
    private func armTryTimer(_ exchange: ProxyExchange, context: ChannelHandlerContext) {
        let epoch = exchange.tryEpoch
        exchange.tryTimer?.cancel()
        exchange.tryTimer = nil
        guard let retry = exchange.retry, let perTry = retry.policy.perTryTimeout else { return }
        let due = retry.tryDeadline(now: .now())
        guard due < retry.deadline else { return }
        exchange.tryTimer = context.eventLoop.scheduleTask(deadline: due) { [weak self] in
            self?.tryTimedOut(exchange, epoch: epoch, after: perTry)
        }
    }

    /// No response head within `perTryTimeout`: try again where the policy allows, else 504.
    private func tryTimedOut(_ exchange: ProxyExchange, epoch: Int, after perTry: MeshDuration) {
        guard self.exchange === exchange, exchange.tryEpoch == epoch, !exchange.responseStarted, let context else { return }
        exchange.tryTimer = nil
        if retryElsewhere(exchange, after: .perTryTimeout, context: context) { return }
        abandonTry(exchange)
        fail(exchange, ProxyError(.timeout, "no response within the per-try timeout \(perTry)"), context: context)
    }

    private func requestTimedOut(_ exchange: ProxyExchange, after timeout: MeshDuration) {
        guard self.exchange === exchange, let context else { return }
        abandonTry(exchange)
        if exchange.responseStarted {
            exchange.errorCause = .timeout
            record(exchange, status: exchange.status)
            self.exchange = nil
            context.close(promise: nil)
        } else {
            if !exchange.requestComplete { exchange.closeAfterResponse = true }
            fail(exchange, ProxyError(.timeout, "no response within \(timeout)"), context: context)
        }
    }

    // MARK: Endings

    /// Every finished exchange goes through here once: access log line and request metrics.
    private func record(_ exchange: ProxyExchange, status: Int) {
        accessLog.record(exchange, status: status)
        if exchange.holdsBreakerRequest || exchange.holdsBreakerRetry, let destination = exchange.route?.destination {
            let (request, retry) = (exchange.holdsBreakerRequest, exchange.holdsBreakerRetry)
            exchange.holdsBreakerRequest = false
            exchange.holdsBreakerRetry = false
            loop.withResilience(destination) { state in
                if request { state.breaker.releaseRequest() }
                if retry { state.breaker.releaseRetry() }
            }
            loop.publishBreakerState(service: destination.service)
        }
        let handle: RequestMetricsHandle
        switch direction {
        case .outbound, .tcpOutbound:
            handle = exchange.route?.destination.requestMetrics ?? exchange.tunnelMetrics ?? loop.unroutedMetrics.outbound
        case .inbound:
            handle = inboundMetrics ?? loop.unroutedMetrics.inbound
        }
        let elapsed = NIODeadline.now().uptimeNanoseconds &- exchange.start.uptimeNanoseconds
        if exchange.poolKey?.tunnel == true {
            handle.recordBytes(request: UInt64(exchange.bytesReceived), response: UInt64(exchange.bytesSent))
        } else {
            handle.record(
                status: status, durationNanos: elapsed, requestBytes: UInt64(exchange.bytesReceived),
                responseBytes: UInt64(exchange.bytesSent))
        }
    }

    /// Answers the current exchange with a sidecar-made error response.
    private func fail(_ exchange: ProxyExchange, _ error: ProxyError, context: ChannelHandlerContext) {
        exchange.cancelTimers()
        exchange.errorCause = error.cause
        if exchange.poolKey?.tunnel == true {
            // An L4 tunnel has no HTTP to answer with: log the cause and close.
            record(exchange, status: 0)
            self.exchange = nil
            phase = .closed
            context.close(promise: nil)
            return
        }
        // A request whose body was not read cannot be followed by another on this connection;
        // one with no body, or whose body has all arrived, can (a 429 keeps the connection).
        if !exchange.requestComplete { discardArrivedBody(exchange) }
        if !exchange.requestComplete { exchange.closeAfterResponse = true }
        let response = error.response(
            closing: exchange.closeAfterResponse, requestID: exchange.requestID, allocator: context.channel.allocator)
        exchange.bytesSent += response.readableBytes
        context.write(wrapOutboundOut(response), promise: nil)
        finishExchange(exchange, status: error.effectiveStatus, context: context)
    }

    /// Reads past the rest of the request body when it is already here (a bodyless request's
    /// always is), so an answer made before forwarding need not close the connection.
    private func discardArrivedBody(_ exchange: ProxyExchange) {
        var buffer = cumulation ?? ByteBuffer()
        guard let (_, complete) = try? exchange.requestFramer.readBody(from: &buffer) else { return }
        cumulation = buffer
        if complete { exchange.requestComplete = true }
    }

    private func finishExchange(_ exchange: ProxyExchange, status: Int, context: ChannelHandlerContext) {
        record(exchange, status: status)
        self.exchange = nil
        if exchange.closeAfterResponse || phase == .tunnel {
            phase = .closed
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                context.close(promise: nil)
            }
            return
        }
        context.flush()
        phase = .idle
        processInput(context: context)
        if phase == .idle { armHeadTimer(context: context) }
        resumeReadingIfWanted()
    }

    /// A malformed head: answer and close (the stream's framing can no longer be trusted).
    private func respondWithoutExchange(_ error: ProxyError, context: ChannelHandlerContext) {
        phase = .closed
        let response = error.response(closing: true, requestID: nil, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(response)).whenComplete { _ in context.close(promise: nil) }
    }
}

extension HTTPProxyHandler: UpstreamOwner {}

extension HTTPProxyHandler.Direction {
    var trafficDirection: TrafficDirection {
        switch self {
        case .outbound, .tcpOutbound: return .outbound
        case .inbound: return .inbound
        }
    }
}
