import NIOCore

/// `/explain` on a gateway: the outside request goes through `RequestFilters.gateway` in dry
/// run (routing by host and path, CORS, body size, authentication with the credentials given
/// as `header=` parameters, the rule's rate limit peeked, then the destination's Route and
/// breaker as for any caller), and the report adds what the gateway rule does with it: the
/// rule and its rewrite, the authentication policy and the user it verified, the response
/// cache's state for the request's key, the rate limit. The decision is `cache` when a fresh
/// entry would answer, `aggregate` for an aggregate rule, `answer` for one the gateway makes
/// itself (a redirect to HTTPS, a CORS preflight), else the outbound's. Explained as come to
/// one of the gateway's listeners (`Listeners.pick`), whose role the filters read as a real
/// request's (the plain listener's `redirectToHttps`).
extension Explain {
    /// A gateway's listeners, as `/explain` picks the one a request comes to.
    struct Listeners: Sendable {
        var http: GatewayListenerRole?
        var https: GatewayListenerRole?

        /// The listener `query` is explained on: `listener=` when this gateway has it; without
        /// one, the only listener, or HTTPS when both answer alike (the plain one does not
        /// redirect). Nil for the outbound (`direction=outbound`, or no gateway). Fails naming
        /// the parameter for a listener the gateway lacks, `listener` without a gateway, and
        /// both listeners when the plain one redirects (which one is meant decides the answer).
        static func pick(_ query: Query, gateway: Listeners?) -> Result<(name: String, role: GatewayListenerRole)?, ExplainError> {
            guard (query.direction ?? (gateway == nil ? "outbound" : "gateway")) == "gateway" else {
                guard query.listener == nil else { return .failure(.init("listener is for direction=gateway")) }
                return .success(nil)
            }
            guard let gateway else {
                return .failure(.init("direction=gateway: this sidecar is no gateway (it has no gateway listeners)"))
            }
            switch (query.listener, gateway.http, gateway.https) {
            case ("http"?, let http?, _): return .success(("http", http))
            case ("https"?, _, let https?): return .success(("https", https))
            case (let name?, _, _): return .failure(.init("listener=\(name): this gateway has no gateway.\(name) listener"))
            case (nil, let http?, nil): return .success(("http", http))
            case (nil, let http?, _?) where http.redirectToHttps:
                return .failure(.init("listener: this gateway's http listener redirects to its https listener; say listener=http or listener=https"))
            case (nil, _, let https?): return .success(("https", https))
            case (nil, nil, nil): return .failure(.init("direction=gateway: this gateway has no listeners"))
            }
        }
    }

    static func gatewayFields(_ request: AdmittedRequest, loop: LoopContext) -> [(String, ConfigValue)] {
        guard let match = request.gatewayMatch else { return [] }
        let rule = match.rule
        var ruleFields: [(String, ConfigValue)] = [("route", .string(match.route.name)), ("index", .int(match.ruleIndex))]
        if case .map(let pairs) = rule.configValue { ruleFields += pairs }
        if let target = request.upstreamTarget { ruleFields.append(("upstreamPath", .string(target))) }
        var fields: [(String, ConfigValue)] = [("gatewayRule", .map(ruleFields))]
        if let policy = rule.auth {
            var auth: [(String, ConfigValue)] = [("policy", .string(policy))]
            if let user = request.user { auth.append(("verifiedUser", .string(user))) }
            fields.append(("authentication", .map(auth)))
        }
        if let policy = rule.cache {
            var cache: [(String, ConfigValue)] = [
                ("ttl", .string(policy.ttl.description)), ("maxBytes", .int(policy.maxBytes)),
                ("allowAuthorization", .bool(policy.allowAuthorization)), ("key", .string(GatewayCacheLookup.key(request))),
            ]
            if let store = cacheStore(match, policy: policy, loop: loop) {
                let summary = store.summary(key: GatewayCacheLookup.key(request), now: loop.now)
                cache += [
                    ("storedBytes", .int(summary.storedBytes)), ("entries", .int(summary.entries)),
                    ("keyVariants", .int(summary.variants)), ("keyFresh", .int(summary.fresh)),
                ]
            }
            fields.append(("cache", .map(cache)))
        }
        if let limit = rule.rateLimit {
            let key = GatewayRateLimitFilter.key(request, limit)
            let allowed = loop.gatewayLimiters.take(
                route: match.route.name, ruleIndex: match.ruleIndex, key: key, limit: limit.limit, now: loop.now, peek: true)
            fields.append(("gatewayRateLimit", .map([
                ("requestsPerSecond", .int(limit.limit.requestsPerSecond)), ("burst", .int(limit.limit.burst)),
                ("key", .string(key)), ("allowsNow", .bool(allowed == .allowed)),
            ])))
        }
        return fields
    }

    /// What the gateway does itself with an admitted request, before any destination: `cache`
    /// (a fresh entry would answer this GET/HEAD, as `GatewayCacheLookup` decides) or
    /// `aggregate`; nil when it goes upstream.
    static func edgeDecision(_ request: AdmittedRequest, loop: LoopContext) -> String? {
        guard let match = request.gatewayMatch else { return nil }
        if match.rule.aggregate != nil { return "aggregate" }
        let headers = request.head.headers
        guard let policy = match.rule.cache, request.head.method == .GET || request.head.method == .HEAD,
            let store = cacheStore(match, policy: policy, loop: loop),
            store.wouldHit(GatewayCacheLookup.asked(request), header: { headers.firstValue(named: $0) }, now: loop.now)
        else { return nil }
        return "cache"
    }

    /// The rule's store, if a request made one (asking makes none).
    private static func cacheStore(_ match: GatewayTable.Match, policy: GatewayCachePolicy, loop: LoopContext) -> RuleCache? {
        loop.responseCaches.shared.existing(.init(route: match.route.name, index: match.ruleIndex), policy: policy)
    }
}
