/// The immutable routing view of one config snapshot: for every destination service its
/// ordered rules, healthy endpoints and traffic policy, plus this sidecar's own inbound
/// authorization. Rebuilt whole from each snapshot, never patched; each event loop holds the
/// current one, so a request reads it without a lock. A class: a request reads it through its
/// loop, and a struct held by the loop would be copied (every field retained) per read.
public final class RouteTable: Sendable {
    /// One destination the local app may call.
    /// A class, immutable: every request that routes to it holds it, and a reference costs one
    /// retain where a struct of this size would copy (and retain) each of its fields.
    public final class Destination: Sendable {
        public let service: String
        public let rules: [RouteRule]
        public let endpoints: [Endpoint]
        public let policy: TrafficPolicy
        /// `sidecar_requests_total{direction="outbound",peer=service}` and friends, resolved once here.
        let requestMetrics: RequestMetricsHandle?

        init(service: String, rules: [RouteRule], endpoints: [Endpoint], policy: TrafficPolicy, requestMetrics: RequestMetricsHandle?) {
            self.service = service
            self.rules = rules
            self.endpoints = endpoints
            self.policy = policy
            self.requestMetrics = requestMetrics
        }
    }

    /// A sidecar inbound that serves the destination service.
    public struct Endpoint: Sendable, Hashable {
        public let address: HostPort
        public let labels: [String: String]

        public func matches(_ subset: [String: String]) -> Bool {
            subset.allSatisfy { labels[$0.key] == $0.value }
        }
    }

    public let localService: String
    public let trustDomain: String
    public let destinations: [String: Destination]
    public let authorization: AuthorizationPolicy?
    /// This sidecar's own TrafficPolicy (its inbound rate limit), if any.
    public let localPolicy: TrafficPolicy?
    /// Intercepted connections: the service an original destination address belongs to.
    public let addresses: ServiceAddressMap
    public let version: Int
    /// The gateway's routes and authentication (empty on a sidecar that is no gateway).
    public let gateway: GatewayTable

    public init(
        localService: String, trustDomain: String, resources: [MeshResource], version: Int = 1,
        metrics: SidecarMetrics? = nil
    ) {
        self.localService = localService
        self.trustDomain = trustDomain
        self.version = version
        self.addresses = ServiceAddressMap(resources: resources)
        var routes: [String: Route] = [:]
        var policies: [String: TrafficPolicy] = [:]
        var endpoints: [String: [Endpoint]] = [:]
        var known: Set<String> = []
        var authorization: AuthorizationPolicy?
        var unhealthy: [String: Int] = [:]
        for resource in resources {
            switch resource {
            case .route(let route):
                routes[route.service] = route
                known.insert(route.service)
            case .trafficPolicy(let policy):
                policies[policy.service] = policy
            case .instance(let instance):
                known.insert(instance.service)
                unhealthy[instance.service, default: 0] += instance.health == .healthy ? 0 : 1
                if instance.health == .healthy {
                    endpoints[instance.service, default: []].append(
                        Endpoint(address: instance.endpoint, labels: instance.labels))
                }
            case .service(let service):
                known.insert(service.name)
            case .authorizationPolicy(let policy):
                if policy.service == localService { authorization = policy }
            case .gatewayRoute, .authenticationPolicy:
                break  // GatewayTable below
            }
        }
        var destinations: [String: Destination] = [:]
        for service in known {
            destinations[service] = Destination(
                service: service,
                rules: routes[service]?.rules ?? [RouteRule()],
                endpoints: endpoints[service] ?? [],
                policy: policies[service] ?? .default(service: service),
                requestMetrics: metrics?.requests.handle(direction: .outbound, peer: service))
            if let peer = metrics?.peer(service) {
                peer.endpoints(.healthy).set(Int64(endpoints[service]?.count ?? 0))
                peer.endpoints(.unhealthy).set(Int64(unhealthy[service] ?? 0))
            }
        }
        self.destinations = destinations
        self.authorization = authorization
        self.localPolicy = policies[localService]
        self.gateway = GatewayTable(resources: resources, destinations: destinations, metrics: metrics)
    }

    /// The destination named by a `Host` (or proxy-form authority): `payments`,
    /// `payments.mesh`, `payments:80`.
    public func destination(forHost host: Substring) -> Destination? {
        destinations[HostName.of(host, droppingSuffix: ".mesh")]
    }

    /// Who an outbound exchange is for (its `peer` label): the service `authority` names, else
    /// an intercepted connection's service (`defaultDestination`), else the authority's host.
    func outboundPeer(authority: String, defaultDestination: String?) -> String {
        if let defaultDestination, destination(forHost: Substring(authority)) == nil { return defaultDestination }
        return String(HostName.withoutPort(Substring(authority)))
    }
}

extension RouteTable.Destination {
    /// The first rule whose path (normalized; prefixes match whole segments), method and
    /// headers match; nil means 404 `no-route`.
    func rule(path: Substring, method: String, header: (String) -> String?) -> RouteRule? {
        ruleIndex(path: path, method: method, header: header).map { rules[$0] }
    }

    func ruleIndex(path: Substring, method: String, header: (String) -> String?) -> Int? {
        rules.firstIndex { $0.match.matches(path: path, method: method, header: header) }
    }
}
