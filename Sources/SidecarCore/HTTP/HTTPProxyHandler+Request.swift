import NIOCore

/// The request side of `HTTPProxyHandler`: a parsed head becomes an exchange (route, policy,
/// limits, fault injection), gets an upstream connection from the loop's pool, and its body is
/// forwarded (and kept for replay up to 64 KiB).
extension HTTPProxyHandler {
    // MARK: Request side

    func processInput(context: ChannelHandlerContext) {
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

    func startExchange(_ head: HTTPRawRequestHead, context: ChannelHandlerContext) {
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
            exchange.routeDeadline = .now() + rule.timeout.timeAmount
            armDeadlineTimer(context: context)
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
    func prepareReplay(
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
    func mirrorIfBuffered(_ exchange: ProxyExchange) {
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

    func connectOutbound(_ exchange: ProxyExchange, context: ChannelHandlerContext) {
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

    func lease(
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

    func connected(_ upstream: UpstreamHandler, exchange: ProxyExchange, context: ChannelHandlerContext) {
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

    func forwardRequestBody(context: ChannelHandlerContext) {
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

    func flushUpstream() {
        guard upstreamNeedsFlush else { return }
        upstreamNeedsFlush = false
        exchange?.upstream?.channel?.flush()
    }
}
