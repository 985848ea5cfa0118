import NIOCore

/// The destination's AuthorizationPolicy, on the normalized path: a caller it does not allow
/// gets 403 `forbidden`, counted in `sidecar_authz_denied_total{caller}`.
struct AuthorizationFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        let exchange = request.exchange
        guard loop.table.allows(caller: request.caller, method: exchange.methodName, path: Substring(exchange.path)) else {
            loop.metrics.authzDenied(caller: request.caller ?? "unknown").increment()
            return .reject(ProxyError(
                .forbidden, "\(request.caller ?? "an unidentified caller") may not \(exchange.methodName) \(exchange.path)"))
        }
        return .next
    }
}

/// The local service's own rate limit (TrafficPolicy `rateLimit`, optionally per caller).
struct InboundRateLimitFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard case .limited(let wait) = loop.takeInboundToken(caller: request.caller ?? "unknown", now: now) else {
            return .next
        }
        var error = ProxyError(.rateLimited, "\(loop.table.localService) is over its request rate")
        error.retryAfter = TokenBucket.Decision.limited(retryAfter: wait).retryAfterSeconds
        return .reject(error)
    }
}
