import NIOCore

/// The request side of `HTTPProxyHandler`: a parsed head becomes an exchange, passes the
/// direction's `RequestFilters` (route, policy, limits, fault injection), gets an upstream
/// connection from the loop's pool, and its body is forwarded (and kept for replay up to 64 KiB).
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
                if let bytes = cumulation, bytes.readableBytes > 0, let upstream = exchange?.upstream {
                    cumulation = nil
                    exchange?.bytesReceived += bytes.readableBytes
                    upstream.send(bytes)
                    upstreamNeedsFlush = true
                }
                return
            case .connecting, .awaitingResponse, .closed:
                return
            }
        }
    }

    func startExchange(_ head: HTTPRawRequestHead, context: ChannelHandlerContext) {
        let requestID = head.headers.firstValue(of: .requestID) ?? RequestIdentifiers.requestID(using: &loop.random)
        let rawTarget = head.target
        // The path is normalized before anything looks at it; routing, authorization and the
        // upstream all see the same one (DESIGN.md "Identity and trust").
        let target: HTTPRequestTarget?
        let refusal: String?
        do {
            target = try HTTPRequestTarget(parsing: rawTarget)
            refusal = nil
        } catch {
            target = nil
            refusal = error.description
        }
        let authority = target?.authority ?? head.headers.firstValue(of: .host) ?? ""
        let path = target?.path ?? String(rawTarget.prefix { $0 != "?" })
        let peer: String
        switch direction {
        case .outbound: peer = loop.table.outboundPeer(authority: authority, defaultDestination: defaultDestination)
        case .inbound: peer = callerService ?? "unknown"
        case .tcpOutbound(let service): peer = service
        case .gateway:
            if clientAddress == nil { clientAddress = context.channel.remoteAddress?.ipAddress }
            peer = clientAddress ?? "unknown"
        }
        let exchange = ProxyExchange(
            method: head.method, methodName: head.methodName, authority: authority, path: path,
            requestID: requestID, peer: peer, closeAfterResponse: !head.framing.keepAlive || loop.draining,
            framing: head.framing.body, start: context.eventLoop.now)
        exchange.upgradeRequested = head.framing.upgrade
        exchange.defaultDestination = defaultDestination
        self.exchange = exchange

        if head.method == .CONNECT || (rawTarget.utf8.first != UInt8(ascii: "/") && rawTarget.lowercased().hasPrefix("https://")) {
            fail(exchange, ProxyError(.badRequest, "CONNECT and https:// targets are not proxied; send plain HTTP"),
                 context: context)
            return
        }
        guard let target else {
            fail(exchange, ProxyError(.badRequest, refusal ?? "invalid request-target"), context: context)
            return
        }
        let filters: ArraySlice<any RequestFilter>
        switch direction {
        case .outbound: filters = RequestFilters.outbound[...]
        case .inbound: filters = RequestFilters.inbound[...]
        case .gateway: filters = RequestFilters.gateway[...]
        case .tcpOutbound: return
        }
        var request = AdmittedRequest(head: head, target: target, exchange: exchange, caller: callerService)
        guard setHeaders(of: &request, target: target, exchange: exchange, context: context) else { return }
        admit(&request, through: filters, context: context)
    }

    /// This hop's headers and the listener's facts on the request the filters see; false when
    /// it was answered already.
    private func setHeaders(
        of request: inout AdmittedRequest, target: HTTPRequestTarget, exchange: ProxyExchange, context: ChannelHandlerContext
    ) -> Bool {
        request.setHopHeaders(inbound: direction.trafficDirection == .inbound, random: &loop.random)
        if let absolute = target.authority {
            // RFC 9112 §3.2.2: an absolute-form target's authority replaces Host.
            guard let host = try? HTTPHeaderLine(name: "host", value: absolute) else {
                fail(exchange, ProxyError(.badRequest, "the target's authority is not a valid Host"), context: context)
                return false
            }
            request.addedHeaders.append(host)
        }
        if case .gateway(let role) = direction {
            request.listener = role
            request.client = clientAddress
        }
        return true
    }

    /// Runs `filters` in order over the request in place; a rejection answers the request, a
    /// delay resumes the rest on the loop's timer, and a request every filter admitted is sent
    /// upstream.
    func admit(_ request: inout AdmittedRequest, through filters: ArraySlice<any RequestFilter>, context: ChannelHandlerContext) {
        let exchange = request.exchange
        switch RequestFilters.run(&request, through: filters, loop: loop, now: context.eventLoop.now) {
        case .rejected(let error)?:
            fail(exchange, error, context: context)
        case .answered(let response)?:
            answer(exchange, response, context: context)
        case .delayed(let delay, let remaining)?:
            phase = .connecting
            armDeadlineTimer(context: context)  // the route timeout runs on while the request waits
            let held = request
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                guard self.exchange === exchange, let context = self.context else { return }
                var request = held
                self.admit(&request, through: remaining, context: context)
            }
        case nil:
            armDeadlineTimer(context: context)  // routing started the route timeout
            if answeredAtEdge(request, context: context) { return }
            forward(request, context: context)
        }
    }

    /// Every filter admitted the request: write its head for the next hop, then lease a
    /// connection (to an endpoint of the destination, or to the local app on the inbound).
    func forward(_ request: AdmittedRequest, context: ChannelHandlerContext) {
        let exchange = request.exchange
        let head = request.head
        var rewritten = allocator.buffer(capacity: head.byteCount + 160)
        let writer = HTTPHeadWriter(removing: request.removedHeaders, relayUpgrade: true)
        if let target = request.upstreamTarget {
            writer.write(head, target: target, adding: request.addedHeaders, into: &rewritten)
        } else if request.target.isRewritten {
            writer.write(head, target: request.target.originForm, adding: request.addedHeaders, into: &rewritten)
        } else {
            writer.write(head, adding: request.addedHeaders, into: &rewritten)
        }
        exchange.rewrittenHead = rewritten
        switch direction {
        case .outbound, .gateway:
            guard let (destination, rule, _) = request.route else { return }
            prepareReplay(exchange, head: head, rewritten: rewritten, rule: rule, destination: destination, context: context)
            mirrorIfBuffered(exchange)
            connectOutbound(exchange, context: context)
        case .inbound(let app):
            lease(exchange, key: .init(address: app, service: nil), connectTimeout: .seconds(5), context: context)
        case .tcpOutbound:
            break
        }
    }

    /// The header names only the mesh sets; removed from what a caller sends, in any spelling
    /// and from trailers too.
    static let identityHeaders = ["x-mesh-caller", "x-mesh-user"]

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
            request: .init(method: head.method, hasIdempotencyKey: (head.headers.firstIndex(of: .idempotencyKey) != nil),
                           contentLength: declared),
            deadline: exchange.start + rule.timeout.timeAmount)
        exchange.retry = retry
        exchange.retryHead = rewritten
        exchange.mirrorPending = !head.framing.upgrade && MirrorDecision.shouldMirror(rule.mirror, using: &loop.random)
        let limit = RetryStateMachine.maxReplayBodyBytes
        if !exchange.requestComplete, retry.shouldBufferBody || exchange.mirrorPending, (declared ?? 0) <= limit {
            exchange.replayBody = allocator.buffer(capacity: declared ?? 4096)
        }
        loop.cluster(destination).retryBudgetRequestStarted(now: context.eventLoop.now)
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
        _ exchange: ProxyExchange, key: ConnectionPool.Key, connectTimeout: TimeAmount, context: ChannelHandlerContext
    ) {
        // Pool limits apply to a destination a request made a cluster for (not tunnels, not the app).
        let cluster = key.tunnel ? nil : key.service.flatMap { loop.existingCluster($0) }
        phase = .connecting
        exchange.poolKey = key
        exchange.attempts += 1
        exchange.tryEpoch &+= 1
        let epoch = exchange.tryEpoch
        if let upstream = loop.pool.popIdle(key) {  // the common case, without a future
            connected(upstream, exchange: exchange, context: context)
            return
        }
        loop.pool.lease(key, cluster: cluster, connectTimeout: connectTimeout).assumeIsolated().whenComplete { [self] result in
            guard self.exchange === exchange, exchange.tryEpoch == epoch, self.phase == .connecting,
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
                    route.destination.retriesConnectFailure(rule: route.rule, attempts: exchange.attempts, tried: exchange.triedEndpoints)
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
        if let address = exchange.upstreamAddress, let destination = exchange.route?.destination {
            let cluster = loop.cluster(destination)
            cluster.tryStarted(at: address)
            exchange.outstandingAt = (cluster, address)
        }
        upstreamWritable = channel.isWritable
        let now = context.eventLoop.now  // one clock read (a vDSO call) for both
        exchange.deadlines.bodyProgress = now
        exchange.tryStartedAt = now
        upstream.send(head)
        // A retry: first the body bytes an earlier try forwarded, then whatever still arrives.
        if let body = exchange.replayBody, body.readableBytes > 0 { upstream.send(body) }
        upstreamNeedsFlush = true
        phase = exchange.requestComplete ? .awaitingResponse : .forwardingRequest
        if exchange.requestComplete { armTryTimer(exchange, context: context) } else { armDeadlineTimer(context: context) }
        processInput(context: context)
        flushUpstream()
        resumeReadingIfWanted()
    }

    func forwardRequestBody(context: ChannelHandlerContext) {
        guard let exchange, let upstream = exchange.upstream else { return }
        guard var buffer = cumulation, buffer.readableBytes > 0 else { return }
        do {
            var (body, progress) = try exchange.requestFramer.readBodyProgress(from: &buffer)
            let complete = progress.isComplete
            cumulation = buffer
            if complete, progress.trailerSectionBytes > 2, let received = body {
                body = HTTPTrailerSection.removing(
                    Self.identityHeaders, from: received, sectionBytes: progress.trailerSectionBytes,
                    allocator: allocator)
            }
            if let body, body.readableBytes > 0 {
                exchange.deadlines.bodyProgress = context.eventLoop.now
                exchange.bytesReceived += body.readableBytes
                if let limit = exchange.maxBodyBytes, exchange.bytesReceived > limit {
                    abandonTry(exchange)
                    exchange.closeAfterResponse = true
                    fail(exchange, ProxyError(.badRequest, "the request body is over \(limit) bytes", status: 413), context: context)
                    return
                }
                exchange.keepForReplay(body)
                upstream.send(body)
                upstreamNeedsFlush = true
            }
            if complete {
                exchange.requestComplete = true
                phase = .awaitingResponse
                armTryTimer(exchange, context: context)
                mirrorIfBuffered(exchange)
            }
        } catch {
            abandonTry(exchange)
            exchange.closeAfterResponse = true
            fail(exchange, ProxyError.badRequest(error), context: context)
        }
    }

    func flushUpstream() {
        guard upstreamNeedsFlush else { return }
        upstreamNeedsFlush = false
        exchange?.upstream?.flush()
    }
}
