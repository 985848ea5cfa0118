/// The gateway's routing view of one config snapshot: the `GatewayRoute`s in order (by name,
/// so every snapshot orders them alike), an authenticator per `AuthenticationPolicy`, and the
/// `direction="gateway"` request metrics of every service a rule names. Part of `RouteTable`,
/// rebuilt with it, immutable; empty on a sidecar that is no gateway.
public struct GatewayTable: Sendable {
    /// One rule that matched a request, with where it came from (rate-limit keys, metrics).
    struct Match {
        let route: GatewayRoute
        let ruleIndex: Int
        /// `route.rules[ruleIndex]`, copied once: every gateway filter reads it.
        let rule: GatewayRule
    }

    public let routes: [GatewayRoute]
    /// `sidecar_requests_total{direction="gateway",peer=service}` and friends, per service.
    let requestMetrics: [String: RequestMetricsHandle]
    /// For requests no rule took (`no-route`, `bad-request`, a redirect).
    let unroutedMetrics: RequestMetricsHandle?
    /// One per AuthenticationPolicy, by name (JWKS loaded).
    let authenticators: [String: GatewayAuthenticator]

    init(resources: [MeshResource], metrics: SidecarMetrics?) {
        var routes: [GatewayRoute] = []
        for case .gatewayRoute(let route) in resources { routes.append(route) }
        routes.sort { $0.name < $1.name }
        self.routes = routes
        var handles: [String: RequestMetricsHandle] = [:]
        if let metrics {
            for service in Set(routes.flatMap { $0.rules.flatMap(\.services) }) {
                handles[service] = metrics.requests.handle(direction: .gateway, peer: service)
            }
        }
        self.requestMetrics = handles
        self.unroutedMetrics = routes.isEmpty ? nil : metrics?.requests.handle(direction: .gateway, peer: "unknown")
        var authenticators: [String: GatewayAuthenticator] = [:]
        // Only a gateway reads JWKS files (every sidecar of a dynamic mesh receives the policies).
        if !routes.isEmpty {
            for case .authenticationPolicy(let policy) in resources { authenticators[policy.name] = GatewayAuthenticator(policy) }
        }
        self.authenticators = authenticators
    }

    /// The first rule, of the first route whose hosts take `host`, whose path (normalized;
    /// prefixes match whole segments), method and headers match.
    func match(host: Substring, path: Substring, method: String, header: (String) -> String?) -> Match? {
        let lowered = HostName.of(host)
        for route in routes where route.matches(host: lowered[...]) {
            if let index = route.rules.firstIndex(where: { $0.match.matches(path: path, method: method, header: header) }) {
                return Match(route: route, ruleIndex: index, rule: route.rules[index])
            }
        }
        return nil
    }
}

extension RouteMatch {
    /// Path (prefixes match whole segments), method and every listed header.
    func matches(path: Substring, method: String, header: (String) -> String?) -> Bool {
        switch self.path {
        case .prefix(let prefix): if !HTTPRequestTarget.path(path, hasSegmentPrefix: prefix) { return false }
        case .exact(let exact): if path != exact[...] { return false }
        }
        if let expected = self.method, expected != method { return false }
        return headers.allSatisfy { header($0.key) == $0.value }
    }
}
