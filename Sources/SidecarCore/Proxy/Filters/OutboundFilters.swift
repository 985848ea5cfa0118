import NIOCore

/// Stops routing loops: `x-mesh-hops` counts the sidecars a request crossed; at 8 the answer
/// is 508 `loop-detected`, and anything but 1–3 digits is 400. Sets the next hop's count.
struct HopLimitFilter: RequestFilter {
    static let maxHops = 8

    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let hops = Self.hopCount(request.head.headers.firstValue(of: .meshHops)) else {
            return .reject(ProxyError(.badRequest, "x-mesh-hops must be a small non-negative integer"))
        }
        guard hops < Self.maxHops else {
            return .reject(ProxyError(.loopDetected, "request crossed \(hops) sidecars; refusing a routing loop"))
        }
        request.removedHeaders.append("x-mesh-hops")
        request.addedHeaders.append(HTTPHeaderLine(generatedName: "x-mesh-hops", value: Self.counts[hops + 1]))
        return .next
    }

    /// "0"…"8": the next hop's count without formatting an integer per request.
    private static let counts = (0...maxHops).map { String($0) }

    /// `x-mesh-hops` as sent: absent is 0; anything but 1–3 digits is refused (a negative or
    /// huge count must not stretch a loop past the limit).
    static func hopCount(_ value: String?) -> Int? {
        guard let value else { return 0 }
        guard (1...3).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(value)
    }
}

/// Finds the destination (by `Host`/authority, else an intercepted connection's service) and
/// its first matching rule (404 `no-route` otherwise); applies the rule's request header
/// rewrites and starts the route timeout.
struct RoutingFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        let exchange = request.exchange
        guard let destination = loop.table.destination(forHost: Substring(exchange.authority))
            ?? exchange.defaultDestination.flatMap({ loop.table.destinations[$0] })
        else {
            return .reject(ProxyError(.noRoute, "no service \"\(exchange.peer)\" in the mesh"))
        }
        let headers = request.head.headers
        guard let index = destination.ruleIndex(
            path: Substring(exchange.path), method: exchange.methodName, header: { headers.firstValue(named: $0) })
        else {
            return .reject(ProxyError(.noRoute, "no route of \(destination.service) matches \(exchange.methodName) \(exchange.path)"))
        }
        Self.take(destination, ruleIndex: index, for: &request, now: now)
        return .next
    }

    /// The request goes to `destination` by its rule `ruleIndex`: the route timeout starts and
    /// the rule's request header rewrites apply (also the gateway's, once it chose the service).
    static func take(_ destination: RouteTable.Destination, ruleIndex index: Int, for request: inout AdmittedRequest, now: NIODeadline) {
        let rule = destination.rules[index]
        request.route = (destination, rule, index)
        request.exchange.route = (destination, rule)
        request.exchange.deadlines.route = now + rule.timeout.timeAmount
        guard !rule.requestHeaders.isEmpty else { return }
        request.removedHeaders += rule.requestHeaders.remove
        for (name, value) in rule.requestHeaders.set.sorted(by: { $0.key < $1.key }) {
            if let line = try? HTTPHeaderLine(name: name, value: value) { request.addedHeaders.append(line) }
        }
    }
}

/// The matched rule's own rate limit (429 `rate-limited` with `Retry-After`), exact across loops.
struct RouteRateLimitFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let (destination, rule, index) = request.route, let limit = rule.rateLimit,
            case .limited = loop.takeRuleToken(
                service: destination.service, ruleIndex: index, limit: limit, now: now, peek: request.dryRun)
        else { return .next }
        var error = ProxyError(.rateLimited, "\(destination.service): this route allows \(limit.requestsPerSecond) requests per second")
        error.retryAfter = 1
        return .reject(error)
    }
}

/// Takes one of the destination's `maxRequests` slots, held until the exchange is recorded;
/// at the limit the answer is 503 `circuit-open` (or the TrafficPolicy's fallback).
struct CircuitBreakerFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let destination = request.route?.destination else { return .next }
        if let refusal = loop.cluster(destination).admitRequest(peek: request.dryRun) { return .reject(refusal) }
        if !request.dryRun { request.exchange.holdsBreakerRequest = true }
        return .next
    }
}

/// The rule's fault injection, abort half: a share of requests answered with the set status.
struct FaultAbortFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let abort = request.route?.rule.fault?.abort,
            request.dryRun ? abort.percent >= 100 : loop.chance(abort.percent)
        else { return .next }
        var error = ProxyError(.faultInjected, "aborted by the route's fault injection", status: abort.status)
        error.grpcStatus = abort.grpcStatus.flatMap(GRPCStatusCode.init(rawValue:))
        return .reject(error)
    }
}

/// The rule's fault injection, delay half: a share of requests held on the loop's timer (the
/// loop serves other requests meanwhile).
struct FaultDelayFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let delay = request.route?.rule.fault?.delay, !request.dryRun, loop.chance(delay.percent) else { return .next }
        return .delay(delay.duration.timeAmount)
    }
}
