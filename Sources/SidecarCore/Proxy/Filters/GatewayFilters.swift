#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// The plain listener of a gateway with `redirectToHttps`: every request gets 308 to the same
/// host and target on the HTTPS listener (before routing: nothing goes upstream in the clear).
struct HTTPSRedirectFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let role = request.listener, role.redirectToHttps, !role.secure else { return .next }
        let authority = request.head.headers.firstValue(named: "host") ?? ""
        let host = HostName.withoutPort(Substring(authority))
        guard !host.isEmpty, HostPort.isHostName(host) || HostPort.isIPv4(host) else {
            return .reject(ProxyError(.badRequest, "a redirect to HTTPS needs a valid Host"))
        }
        let port = role.httpsPort().map { $0 == 443 ? "" : ":\($0)" } ?? ""
        let location = "https://\(host)\(port)\(request.target.originForm)"
        return .answer(EdgeResponse(status: 308, headers: [("location", location)]))
    }
}

/// Finds the GatewayRoute rule for the request's `Host` and path (404 `no-route` otherwise),
/// rewrites the path if the rule says so, then routes to the rule's service exactly as the
/// outbound would for an app: that service's Route rule for the (rewritten) path, its timeout
/// and header rewrites. Unknown service: 503 `no-healthy-endpoint`. An `aggregate` rule routes
/// nowhere here: its calls go out once every filter admitted the request (`AggregateExchange`).
struct GatewayRoutingFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        let exchange = request.exchange
        let headers = request.head.headers
        // The exchange's authority is the `Host` (an absolute-form target's authority replaces
        // it, RFC 9112 §3.2.2) and its method name was read once: no String per request here.
        // Closures passed straight to the matchers stay non-escaping: no copy of the head per request.
        guard let match = loop.table.gateway.match(
            host: Substring(exchange.authority), path: Substring(exchange.path), method: exchange.methodName,
            header: { headers.firstValue(named: $0) })
        else {
            return .reject(ProxyError(.noRoute, "no gateway route matches \(exchange.methodName) \(exchange.authority)\(exchange.path)"))
        }
        let rule = match.rule
        request.gatewayMatch = match
        if let aggregate = rule.aggregate {
            exchange.deadlines.route = now + aggregate.timeout.timeAmount + .milliseconds(500)  // a backstop: the aggregate answers by its timeout
            return .next
        }
        exchange.gatewayMetrics = match.metrics
        var path = exchange.path
        if let replacement = rule.rewritePathPrefix, case .prefix(let prefix) = rule.match.path {
            path = Self.rewrite(path, prefix: prefix, to: replacement)
            request.upstreamTarget = request.target.query.map { path + "?" + $0 } ?? path
        }
        guard let destination = match.destination else {
            return .reject(ProxyError(.noHealthyEndpoint, "service \(rule.service) has no instance in the mesh"))
        }
        guard let index = destination.ruleIndex(
            path: Substring(path), method: exchange.methodName, header: { headers.firstValue(named: $0) })
        else {
            return .reject(ProxyError(.noRoute, "no route of \(destination.service) matches \(exchange.methodName) \(path)"))
        }
        RoutingFilter.take(destination, ruleIndex: index, for: &request, now: now)
        return .next
    }

    /// `/orders/42` with prefix `/orders` (or `/orders/`) and replacement `/` is `/42`; the
    /// join has exactly one `/`, and an empty result is `/`.
    static func rewrite(_ path: String, prefix: String, to replacement: String) -> String {
        let rest = path.dropFirst(min(prefix.count, path.count))
        var result = replacement
        if result.hasSuffix("/"), rest.hasPrefix("/") {
            result += rest.dropFirst()
        } else if !result.hasSuffix("/"), !rest.isEmpty, !rest.hasPrefix("/") {
            result += "/" + rest
        } else {
            result += rest
        }
        return result.isEmpty ? "/" : result
    }
}

/// The matched rule's own policies (`RequestFilters.gatewayRule`: CORS, body size,
/// authentication, rate limit) in order, until one does not pass the request on; a rule with
/// none of them (`GatewayTable.Match.hasEdgePolicy`, most rules) passes at once, without a
/// call to each. None of them delays a request (a delay would skip the rest of them).
struct GatewayRulePolicyFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard request.gatewayMatch?.hasEdgePolicy == true else { return .next }
        for filter in RequestFilters.gatewayRule {
            let decision = filter.admit(&request, loop: loop, now: now)
            guard case .next = decision else { return decision }
        }
        return .next
    }
}

/// The rule's CORS policy: a preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) is answered here, 204 with the allowed methods and headers,
/// or 403 `forbidden` for an origin or method not allowed; any other request from an allowed
/// `Origin` gets `Access-Control-Allow-Origin` on its response.
struct CORSFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let cors = request.gatewayMatch?.rule.cors, let origin = request.head.headers.firstValue(named: "origin") else {
            return .next
        }
        let allowed = cors.allowedOrigin(origin)
        let asked = request.head.headers.firstValue(named: "access-control-request-method")
        guard request.head.methodName == "OPTIONS", let asked else {
            if let allowed {
                request.exchange.addedResponseHeaders.append(try! HTTPHeaderLine(name: "access-control-allow-origin", value: allowed))
                request.exchange.addedResponseHeaders.append(try! HTTPHeaderLine(name: "vary", value: "origin"))
            }
            return .next
        }
        guard let allowed, cors.allowMethods.contains(asked) else {
            return .reject(ProxyError(.forbidden, "CORS: origin \(origin) may not send \(asked)"))
        }
        var headers: [(String, String)] = [
            ("access-control-allow-origin", allowed), ("access-control-allow-methods", cors.allowMethods.joined(separator: ", ")),
        ]
        if let requested = request.head.headers.firstValue(named: "access-control-request-headers") {
            let names = requested.split(separator: ",").map { $0.trimmingSpaces.lowercased() }
            let granted = cors.allowHeaders.isEmpty ? names : names.filter { cors.allowHeaders.contains($0) }
            if !granted.isEmpty, granted.allSatisfy({ ConfigReader.isHeaderName($0) }) {
                headers.append(("access-control-allow-headers", granted.joined(separator: ", ")))
            }
        }
        if let maxAge = cors.maxAge { headers.append(("access-control-max-age", String(maxAge.nanoseconds / 1_000_000_000))) }
        headers.append(("vary", "origin"))
        return .answer(EdgeResponse(status: 204, headers: headers))
    }
}

/// The rule's `maxBodyBytes`: a declared larger body is refused at once with 413; any other is
/// counted as it passes (chunked HTTP/1.1, HTTP/2 DATA with or without `content-length`) and the
/// exchange ends with 413 (or a reset, once the answer started) when it grows past the limit.
struct BodySizeLimitFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let limit = request.gatewayMatch?.rule.maxBodyBytes else { return .next }
        if case .contentLength(let length) = request.head.framing.body, length > limit {
            return .reject(ProxyError(.badRequest, "the request body is \(length) bytes; this route takes at most \(limit)", status: 413))
        }
        request.exchange.maxBodyBytes = limit
        return .next
    }
}

/// The rule's rate limit, one token bucket per key: the client's IP address, or the API key
/// name / JWT subject authentication verified (the IP when there is none); 429 `rate-limited`
/// with `Retry-After`. Buckets are shared by every loop (exact per process).
struct GatewayRateLimitFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let match = request.gatewayMatch, let limit = match.rule.rateLimit else { return .next }
        let decision = loop.gatewayLimiters.take(
            route: match.route.name, ruleIndex: match.ruleIndex, key: Self.key(request, limit), limit: limit.limit, now: now,
            peek: request.dryRun)
        guard case .limited = decision else { return .next }
        var error = ProxyError(
            .rateLimited, "gateway route \(match.route.name): at most \(limit.limit.requestsPerSecond) requests per second per \(limit.key.rawValue)")
        error.retryAfter = decision.retryAfterSeconds
        return .reject(error)
    }

    /// The bucket `request` takes from (also `/explain`'s).
    static func key(_ request: AdmittedRequest, _ limit: GatewayRateLimit) -> String {
        switch limit.key {
        case .clientIP: "ip:" + (request.client ?? "unknown")
        case .apiKey, .subject: request.user.map { "user:" + $0 } ?? "ip:" + (request.client ?? "unknown")
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (header list items).
    var trimmingSpaces: SubSequence {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}

/// The rule's `auth`: the AuthenticationPolicy it names must verify a JWT or an API key, or
/// the answer is 401 `unauthenticated` with `WWW-Authenticate` (counted in
/// `sidecar_gateway_auth_failures_total{policy,reason}`). The verified subject or key name goes
/// upstream as `x-mesh-user` (any received one was already removed), with the policy's
/// `claimsToHeaders` (received headers of those names removed too).
struct AuthenticationFilter: RequestFilter {
    func admit(_ request: inout AdmittedRequest, loop: LoopContext, now: NIODeadline) -> FilterDecision {
        guard let name = request.gatewayMatch?.rule.auth else { return .next }
        let headers = request.head.headers
        let outcome: GatewayAuthenticator.Outcome
        if let authenticator = loop.table.gateway.authenticators[name] {
            outcome = authenticator.authenticate(header: { headers.firstValue(named: $0) }, now: Self.wallClockSeconds())
        } else {
            outcome = .refused(.noKeys)  // SnapshotCheck refuses a rule naming no policy; fail closed anyway
        }
        switch outcome {
        case .verified(let user, let claimHeaders):
            guard let line = try? HTTPHeaderLine(name: "x-mesh-user", value: user) else {
                return refuse(name, .malformed, loop: loop, dryRun: request.dryRun)
            }
            request.user = user
            request.addedHeaders.append(line)
            for (header, value) in claimHeaders {
                request.removedHeaders.append(header)
                if let claim = try? HTTPHeaderLine(name: header, value: value) { request.addedHeaders.append(claim) }
            }
            return .next
        case .refused(let reason):
            return refuse(name, reason, loop: loop, dryRun: request.dryRun)
        }
    }

    private func refuse(_ policy: String, _ reason: GatewayAuthenticator.Reason, loop: LoopContext, dryRun: Bool) -> FilterDecision {
        if !dryRun { loop.metrics.gatewayAuthFailures(policy: policy, reason: reason).increment() }
        var error = ProxyError(.unauthenticated, "this route needs a valid credential (\(reason.rawValue))")
        error.wwwAuthenticate = loop.table.gateway.authenticators[policy]?.challenge ?? "Bearer realm=\"\(policy)\""
        return .reject(error)
    }

    static func wallClockSeconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec)
    }
}
