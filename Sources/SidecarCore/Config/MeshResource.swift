/// Any one resource operators push and sidecars receive, tagged by its `kind`.
///
/// The unit of `apply`, `get`, `delete` and of a sidecar's static `resources:` list.
public enum MeshResource: Sendable, Equatable {
    case service(MeshService)
    case instance(Instance)
    case route(Route)
    case trafficPolicy(TrafficPolicy)
    case authorizationPolicy(AuthorizationPolicy)
    /// The gateway's routes (only a sidecar with `gateway:` uses them).
    case gatewayRoute(GatewayRoute)
    /// How the gateway authenticates callers of the rules that name it.
    case authenticationPolicy(AuthenticationPolicy)

    public var kind: ResourceKind {
        switch self {
        case .service: .service
        case .instance: .instance
        case .route: .route
        case .trafficPolicy: .trafficPolicy
        case .authorizationPolicy: .authorizationPolicy
        case .gatewayRoute: .gatewayRoute
        case .authenticationPolicy: .authenticationPolicy
        }
    }

    /// Unique per kind.
    public var name: String {
        switch self {
        case .service(let value): value.name
        case .instance(let value): value.name
        case .route(let value): value.name
        case .trafficPolicy(let value): value.name
        case .authorizationPolicy(let value): value.name
        case .gatewayRoute(let value): value.name
        case .authenticationPolicy(let value): value.name
        }
    }

    /// The service the resource is about (a Service's own name; a GatewayRoute's or an
    /// AuthenticationPolicy's own name: they are about no one service).
    public var service: String {
        switch self {
        case .service(let value): value.name
        case .instance(let value): value.service
        case .route(let value): value.service
        case .trafficPolicy(let value): value.service
        case .authorizationPolicy(let value): value.service
        case .gatewayRoute(let value): value.name
        case .authenticationPolicy(let value): value.name
        }
    }

    /// Set by the control plane on what `get` returns; an `apply` carrying one must match.
    public var resourceVersion: String? {
        switch self {
        case .service(let value): value.resourceVersion
        case .instance(let value): value.resourceVersion
        case .route(let value): value.resourceVersion
        case .trafficPolicy(let value): value.resourceVersion
        case .authorizationPolicy(let value): value.resourceVersion
        case .gatewayRoute(let value): value.resourceVersion
        case .authenticationPolicy(let value): value.resourceVersion
        }
    }

    /// A copy carrying `version` (the control plane stamps stored resources).
    public func withResourceVersion(_ version: String?) -> MeshResource {
        switch self {
        case .service(var value): value.resourceVersion = version; return .service(value)
        case .instance(var value): value.resourceVersion = version; return .instance(value)
        case .route(var value): value.resourceVersion = version; return .route(value)
        case .trafficPolicy(var value): value.resourceVersion = version; return .trafficPolicy(value)
        case .authorizationPolicy(var value): value.resourceVersion = version; return .authorizationPolicy(value)
        case .gatewayRoute(var value): value.resourceVersion = version; return .gatewayRoute(value)
        case .authenticationPolicy(var value): value.resourceVersion = version; return .authenticationPolicy(value)
        }
    }
}

/// The `kind` of a resource, as written in YAML (`Route`) and as typed on the command line
/// (`route`, `routes`, `Route`: case-insensitive, singular or plural).
public enum ResourceKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case service = "Service"
    case instance = "Instance"
    case route = "Route"
    case trafficPolicy = "TrafficPolicy"
    case authorizationPolicy = "AuthorizationPolicy"
    case gatewayRoute = "GatewayRoute"
    case authenticationPolicy = "AuthenticationPolicy"

    /// Parses a command-line kind word; nil if unknown.
    public init?(word: String) {
        let lowered = word.lowercased()
        let match = ResourceKind.allCases.first { kind in
            let singular = kind.rawValue.lowercased()
            let plural = singular.hasSuffix("y") ? singular.dropLast() + "ies" : singular + "s"
            return lowered == singular || lowered == plural
        }
        guard let match else { return nil }
        self = match
    }

    public var description: String { rawValue }
}
