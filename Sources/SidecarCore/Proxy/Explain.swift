import NIOCore

/// Admin `GET /explain?authority=payments&path=/pay&method=GET`: what this sidecar would do
/// with such a request on its outbound now, and the state that decides it.
///
/// Not a second implementation: the request is parsed by the same `HTTPHeadParser`, its
/// target normalized by `HTTPRequestTarget`, and it passes the same `RequestFilters.outbound`
/// a real request passes, in dry run (`AdmittedRequest.dryRun`: no rate-limit token taken, no
/// breaker slot held, no rejection counted, fault shares reported instead of rolled). So its
/// `decision` (`forward`, or the `x-mesh-error` cause) is what the next request gets, short
/// of chance (a fault's share, a weighted backend with no usable endpoint) and of what other
/// requests change in between. Runs on one worker loop and shows that loop's view of the
/// per-loop state (outlier ejections are shared; in-flight counts are the loop's).
/// On a gateway the request is an outside client's through `RequestFilters.gateway`
/// (`Explain+Gateway.swift`).
enum Explain {
    struct Query: Equatable {
        var authority: String
        var path: String
        var method: String
        /// `outbound` or `gateway`; nil: the gateway's on a gateway, else the outbound's.
        var direction: String? = nil
        /// Gateway: the listener the request comes to, `http` or `https` (`Listeners.pick`).
        var listener: String? = nil
        /// Gateway: the client's IP address (rate limits keyed by `client-ip`).
        var client: String? = nil
        /// Request header lines `name: value` (`header=` repeated): credentials, `Origin`, …
        var headers: [String] = []
    }

    static let usage =
        "/explain?authority=HOST[&path=/p][&method=GET][&direction=outbound|gateway][&listener=http|https][&client=IP][&header=NAME:VALUE]…"

    /// The query of `uri`: `authority` is required, `path` defaults to `/`, `method` to `GET`.
    static func query(fromURI uri: String) -> Result<Query, ExplainError> {
        var query = Query(authority: "", path: "/", method: "GET")
        guard let mark = uri.firstIndex(of: "?") else { return .failure(.init("missing authority: \(usage)")) }
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecoded(parts[0]), let value = percentDecoded(parts.count > 1 ? parts[1] : "") else {
                return .failure(.init("malformed percent-encoding in \"\(pair.prefix(64))\""))
            }
            switch name {
            case "authority": query.authority = value
            case "path": query.path = value
            case "method": query.method = value
            case "direction":
                guard value == "outbound" || value == "gateway" else { return .failure(.init("direction is outbound or gateway")) }
                query.direction = value
            case "listener":
                guard value == "http" || value == "https" else {
                    return .failure(.init("listener is http or https (the gateway.http or gateway.https listener)"))
                }
                query.listener = value
            case "client": query.client = value
            case "header":
                guard let colon = value.firstIndex(of: ":"), colon != value.startIndex, !value.contains("\r"), !value.contains("\n") else {
                    return .failure(.init("a header is NAME:VALUE"))
                }
                query.headers.append(value)
            default:
                return .failure(.init("unknown parameter \"\(name.prefix(32))\" (authority, path, method, direction, listener, client, header)"))
            }
        }
        guard !query.authority.isEmpty else { return .failure(.init("missing authority: \(usage)")) }
        return .success(query)
    }

    struct ExplainError: Error, Equatable {
        let message: String
        init(_ message: String) { self.message = message }
    }

    /// The report as JSON, from `loop`'s state at `now`; `certificateExpiry` is our workload
    /// certificate's (Unix seconds, 0 when unknown); `gateway`: this sidecar's gateway
    /// listeners, when it is a gateway. Fails (400) for a query that names no listener this
    /// sidecar has, or none where two would answer differently.
    static func report(
        _ query: Query, loop: LoopContext, certificateExpiry: Int64, gateway: Listeners? = nil
    ) -> Result<String, ExplainError> {
        var fields: [(String, ConfigValue)] = []
        let listener: (name: String, role: GatewayListenerRole)?
        switch Listeners.pick(query, gateway: gateway) {
        case .success(let picked): listener = picked
        case .failure(let error): return .failure(error)
        }
        let viaGateway = listener != nil
        let outcome = admit(query, loop: loop, filters: viaGateway ? RequestFilters.gateway : RequestFilters.outbound, listener: listener?.role)
        if let listener { fields += [("direction", .string("gateway")), ("listener", .string(listener.name))] }
        switch outcome {
        case .answered(let response, let request):
            fields.append(("request", requestValue(request)))
            fields.append(("decision", .string("answer")))
            fields.append(("status", .int(response.status)))
            fields.append(("headers", .map(response.headers.map { name, value -> (String, ConfigValue) in (name, .string(value)) })))
            fields += gatewayFields(request, loop: loop)
        case .refused(let error, let request):
            fields.append(("decision", .string(error.cause.rawValue)))
            fields.append(("status", .int(error.effectiveStatus)))
            fields.append(("detail", .string(error.detail)))
            if let request { fields.insert(("request", requestValue(request)), at: viaGateway ? 2 : 0) }
            if viaGateway, let request { fields += gatewayFields(request, loop: loop) }
            if let (destination, rule, index) = request?.route {
                fields += routeFields(destination, rule: rule, index: index, loop: loop)
            }
        case .admitted(let request):
            if viaGateway {
                fields.append(("request", requestValue(request)))
                fields += gatewayFields(request, loop: loop)
                if let edge = edgeDecision(request, loop: loop) {
                    fields.append(("decision", .string(edge)))
                    break
                }
            }
            guard let (destination, rule, index) = request.route else { break }
            if !viaGateway { fields.append(("request", requestValue(request))) }
            let route = routeFields(destination, rule: rule, index: index, loop: loop)
            if usable(destination, rule: rule, loop: loop).perBackend.contains(where: { $0 > 0 }) {
                fields.append(("decision", .string("forward")))
            } else {
                let error = ProxyError(.noHealthyEndpoint, "service \(destination.service) has no healthy endpoint")
                fields.append(("decision", .string(error.cause.rawValue)))
                fields.append(("status", .int(destination.policy.fallback?.status ?? error.effectiveStatus)))
                fields.append(("detail", .string(error.detail)))
            }
            fields += route
        }
        fields.append(("certificateExpiry", .int(Int(certificateExpiry))))
        return .success(ConfigValue.map(fields).json + "\n")
    }

    private enum Outcome {
        case admitted(AdmittedRequest)
        case refused(ProxyError, AdmittedRequest?)
        /// A gateway filter answered it itself (a CORS preflight).
        case answered(EdgeResponse, AdmittedRequest)
    }

    /// The request through the parser, target normalization and `filters`, in dry run; on a
    /// gateway, as come to `listener` (which decides the redirect to HTTPS).
    private static func admit(_ query: Query, loop: LoopContext, filters: [any RequestFilter], listener: GatewayListenerRole?) -> Outcome {
        let lines = query.headers.map { $0 + "\r\n" }.joined()
        var buffer = ByteBuffer(string: "\(query.method) \(query.path) HTTP/1.1\r\nhost: \(query.authority)\r\n\(lines)\r\n")
        var parser = HTTPHeadParser()
        let head: HTTPRawRequestHead
        do {
            guard let parsed = try parser.parseRequest(&buffer) else {
                return .refused(ProxyError(.badRequest, "incomplete request head"), nil)
            }
            head = parsed
        } catch {
            return .refused(ProxyError.badRequest(error), nil)
        }
        let target: HTTPRequestTarget
        do {
            target = try HTTPRequestTarget(parsing: head.target)
        } catch {
            return .refused(ProxyError(.badRequest, error.description), nil)
        }
        let exchange = ProxyExchange(
            method: head.method, methodName: head.methodName, authority: query.authority, path: target.path,
            requestID: "explain", peer: String(query.authority.split(separator: ":").first ?? ""),
            closeAfterResponse: false, framing: head.framing.body, start: loop.now)
        var request = AdmittedRequest(head: head, target: target, exchange: exchange, caller: nil)
        request.dryRun = true
        request.client = query.client
        request.listener = listener
        for filter in filters {
            switch filter.admit(&request, loop: loop, now: loop.now) {
            case .next, .delay: continue
            case .answer(let response): return .answered(response, request)
            case .reject(let error): return .refused(error, request)
            }
        }
        return .admitted(request)
    }

    private static func requestValue(_ request: AdmittedRequest) -> ConfigValue {
        .map([
            ("method", .string(request.head.methodName)), ("authority", .string(request.exchange.authority)),
            ("path", .string(request.target.path)),
        ])
    }

    /// The matched rule, its backends with their usable endpoints, every endpoint's state, and
    /// the destination's breaker, retry budget, rate limit and the identity its peers must show.
    private static func routeFields(
        _ destination: RouteTable.Destination, rule: RouteRule, index: Int, loop: LoopContext
    ) -> [(String, ConfigValue)] {
        let cluster = loop.cluster(destination)
        let now = loop.now
        let outliers = cluster.resilience.outliers
        var ruleFields: [(String, ConfigValue)] = [("index", .int(index))]
        if case .map(let pairs) = rule.configValue { ruleFields += pairs }
        let (backendList, perBackend) = usable(destination, rule: rule, loop: loop)
        let backends: [ConfigValue] = zip(backendList, perBackend).map { backend, count in
            .map([("subset", .sortedMap(backend.subset)), ("weight", .int(backend.weight)), ("usableEndpoints", .int(count))])
        }
        let endpoints: [ConfigValue] = destination.endpoints.map { endpoint in
            .map([
                ("address", .string(endpoint.address.description)), ("labels", .sortedMap(endpoint.labels)),
                ("ejected", .bool(outliers.isEjected(endpoint.address))),
                ("inFlight", .int(cluster.outstandingTries(at: endpoint.address))),
            ])
        }
        let breaker = cluster.resilience.breaker
        let budget = cluster.resilience.retryBudget
        let totals = budget.totals(now)
        var fields: [(String, ConfigValue)] = [
            ("destination", .string(destination.service)),
            ("expectedPeer", .string(SPIFFEID.service(destination.service, trustDomain: loop.table.trustDomain)?.description ?? "")),
            ("rule", .map(ruleFields)),
            ("backends", .list(backends)),
            ("loadBalancer", .string(destination.policy.loadBalancer.rawValue)),
            ("endpoints", .list(endpoints)),
            ("circuitBreaker", .map([
                ("open", .bool(breaker.isOpen)),
                ("requests", .int(breaker.count(.requests))), ("maxRequests", .int(breaker.limit(.requests))),
                ("retries", .int(breaker.count(.retries))), ("maxRetries", .int(breaker.limit(.retries))),
                ("maxConnections", .int(destination.policy.circuitBreaker.maxConnections)),
                ("maxPendingRequests", .int(destination.policy.circuitBreaker.maxPendingRequests)),
            ])),
            ("retryBudget", .map([
                ("percent", .number(budget.percent)), ("minPerSecond", .number(budget.minPerSecond)),
                ("requestsInWindow", .int(totals.requests)), ("retriesInWindow", .int(totals.retries)),
                ("canRetryNow", .bool(budget.canRetry(now: now))),
            ])),
        ]
        if let limit = rule.rateLimit {
            let allowed = loop.takeRuleToken(service: destination.service, ruleIndex: index, limit: limit, now: now, peek: true)
            fields.append(("rateLimit", .map([
                ("requestsPerSecond", .int(limit.requestsPerSecond)), ("burst", .int(limit.burst)),
                ("allowsNow", .bool(allowed == .allowed)),
            ])))
        }
        return fields
    }

    /// The rule's backends (one catch-all when it names none) and, for each, the endpoints a
    /// request picking it could go to: matching its subset, not skipped by outlier detection
    /// (none for a weight of 0), as `Cluster.pick` chooses among.
    private static func usable(
        _ destination: RouteTable.Destination, rule: RouteRule, loop: LoopContext
    ) -> (backends: [WeightedBackend], perBackend: [Int]) {
        let outliers = loop.cluster(destination).resilience.outliers
        let usable = destination.endpoints.filter { !outliers.shouldSkip($0.address) }
        let backends = rule.backends.isEmpty ? [WeightedBackend(subset: [:], weight: 100)] : rule.backends
        return (backends, backends.map { backend in backend.weight > 0 ? usable.filter { $0.matches(backend.subset) }.count : 0 })
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(HTTPGrammar.hexValue),
                    let low = iterator.next().flatMap(HTTPGrammar.hexValue) else { return nil }
                bytes.append(high << 4 | low)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
