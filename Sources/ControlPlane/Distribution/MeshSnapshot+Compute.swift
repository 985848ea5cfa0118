import MeshAPI
import SidecarCore

/// How the control plane makes a service's snapshot from what it stores and what is registered.
/// `PublishedSnapshot` is its encoded form, shared by every watcher of the service.
extension MeshSnapshot {
    /// The snapshot of `service` from everything stored and registered (a pure function).
    ///
    /// - Parameters:
    ///   - dependencies: the services it calls; nil means every known service.
    public static func compute(
        service: String, version: Int64, stored: [MeshResource], registered: [Instance], dependencies: [String]?
    ) -> MeshSnapshot {
        // GatewayRoutes and AuthenticationPolicies name no one service; every sidecar gets them
        // (only a gateway uses them).
        var known = Set(stored.filter { $0.kind != .gatewayRoute && $0.kind != .authenticationPolicy }.map(\.service))
        known.formUnion(registered.map(\.service))
        let destinations = Set(dependencies ?? Array(known))

        var resources: [MeshResource] = []
        for resource in stored {
            switch resource {
            case .authorizationPolicy(let policy) where policy.service == service:
                resources.append(resource)
            case .trafficPolicy(let policy) where policy.service == service || destinations.contains(policy.service):
                resources.append(resource)
            case .route(let route) where destinations.contains(route.service):
                resources.append(resource)
            case .service(let meshService) where destinations.contains(meshService.name):
                resources.append(resource)
            case .instance(let instance) where destinations.contains(instance.service) && instance.health == .healthy:
                resources.append(resource)
            case .gatewayRoute, .authenticationPolicy:
                resources.append(resource)
            default:
                continue
            }
        }
        for instance in registered where destinations.contains(instance.service) && instance.health == .healthy {
            resources.append(.instance(instance))
        }
        resources.sort { ($0.kind.rawValue, $0.name) < ($1.kind.rawValue, $1.name) }
        return MeshSnapshot(service: service, version: version, resources: resources)
    }
}
