/// The gateway's routing view of one config snapshot: the `GatewayRoute`s in order (by name,
/// so every snapshot orders them alike), each rule resolved once against the snapshot (its
/// service's destination and request metrics), and an authenticator per
/// `AuthenticationPolicy`. Part of `RouteTable`, rebuilt with it, immutable; empty on a sidecar
/// that is no gateway.
public struct GatewayTable: Sendable {
    /// One rule a request can match, with where it came from (rate-limit keys, cache stores,
    /// `/explain`) and what routing it needs, resolved when the table is built. A class, one per
    /// rule and snapshot: a request holds it through every gateway filter for one retain, where
    /// a struct would copy (and retain) each of the rule's fields per request.
    final class Match: Sendable {
        let route: GatewayRoute
        let ruleIndex: Int
        /// `route.rules[ruleIndex]`: every gateway filter reads it.
        let rule: GatewayRule
        /// `sidecar_requests_total{direction="gateway",peer=rule.service}` and friends (nil
        /// without metrics, and on an aggregate rule: its calls count as outbound requests).
        let metrics: RequestMetricsHandle?
        /// `rule.service` in the same snapshot; nil when the mesh has no instance of it (503).
        let destination: RouteTable.Destination?
        /// Whether the rule has any policy of its own (CORS, body size, auth, rate limit):
        /// `GatewayRulePolicyFilter` passes a rule without one at once.
        let hasEdgePolicy: Bool
        /// Whether the gateway may answer itself (a `cache:` or `aggregate:` rule).
        let answersAtEdge: Bool

        init(route: GatewayRoute, ruleIndex: Int, metrics: RequestMetricsHandle?, destination: RouteTable.Destination?) {
            let rule = route.rules[ruleIndex]
            self.route = route
            self.ruleIndex = ruleIndex
            self.rule = rule
            self.metrics = metrics
            self.destination = destination
            self.hasEdgePolicy = rule.cors != nil || rule.maxBodyBytes != nil || rule.auth != nil || rule.rateLimit != nil
            self.answersAtEdge = rule.cache != nil || rule.aggregate != nil
        }
    }

    public let routes: [GatewayRoute]
    /// `matches[r][i]` is rule `i` of `routes[r]`.
    private let matches: [[Match]]
    /// `routes[r].hosts` as slices when all are exact names (compared without a copy per
    /// request); nil for a route with a wildcard or no hosts (`GatewayRoute.matches(host:)`).
    private let exactHosts: [[Substring]?]
    /// For requests no rule took (`no-route`, `bad-request`, a redirect).
    let unroutedMetrics: RequestMetricsHandle?
    /// One per AuthenticationPolicy, by name (JWKS loaded).
    let authenticators: [String: GatewayAuthenticator]

    init(resources: [MeshResource], destinations: [String: RouteTable.Destination], metrics: SidecarMetrics?) {
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
        self.matches = routes.map { route in
            route.rules.indices.map { index in
                let service = route.rules[index].aggregate == nil ? route.rules[index].service : nil
                return Match(
                    route: route, ruleIndex: index, metrics: service.flatMap { handles[$0] },
                    destination: service.flatMap { destinations[$0] })
            }
        }
        self.exactHosts = routes.map { route in
            route.hosts.isEmpty || route.hosts.contains { $0.hasPrefix("*.") } ? nil : route.hosts.map { $0[...] }
        }
        self.unroutedMetrics = routes.isEmpty ? nil : metrics?.requests.handle(direction: .gateway, peer: "unknown")
        var authenticators: [String: GatewayAuthenticator] = [:]
        // Only a gateway reads JWKS files (every sidecar of a dynamic mesh receives the policies).
        if !routes.isEmpty {
            for case .authenticationPolicy(let policy) in resources { authenticators[policy.name] = GatewayAuthenticator(policy) }
        }
        self.authenticators = authenticators
    }

    /// The first rule, of the first route whose hosts take `host` (port removed, lower-cased),
    /// whose path (normalized; prefixes match whole segments), method and headers match.
    func match(host: Substring, path: Substring, method: String, header: (String) -> String?) -> Match? {
        let name = Self.name(of: host)
        // By index, over the resolved rules: no copy of a route or a rule per request.
        for routeIndex in routes.indices {
            if let hosts = exactHosts[routeIndex] {
                guard hosts.contains(where: { $0 == name }) else { continue }
            } else if !routes[routeIndex].matches(host: name) {
                continue
            }
            for match in matches[routeIndex] where match.rule.match.matches(path: path, method: method, header: header) {
                return match
            }
        }
        return nil
    }

    /// `host` without its port, lower-cased: a slice of it when it is lower-case ASCII already
    /// (nearly always: no copy per request), else `HostName.of`'s lower-cased copy.
    static func name(of host: Substring) -> Substring {
        let name = HostName.withoutPort(host)
        let isLower = name.utf8.withContiguousStorageIfAvailable { bytes in
            !bytes.contains { $0 >= 0x80 || ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) }
        }
        return isLower == true ? name : Substring(HostName.of(name))
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
