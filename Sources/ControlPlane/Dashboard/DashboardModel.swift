import MeshAPI
import SidecarCore

/// What the dashboard shows, read from the control plane in one go per page: resources,
/// registered instances and their proxies, declared dependencies and the mesh version. A plain
/// value the pages render; the change-feed generation is read first, so a change made while
/// it loads makes the page's live poll answer at once (never a missed update).
struct DashboardModel: Sendable {
    struct ServiceSummary: Sendable {
        var name: String
        var instances: [Instance]
        var proxies: Int
        /// Services this one calls, as its sidecars declared (`controlPlane.dependencies`).
        var calls: [String]
        var kinds: [ResourceKind]

        var healthy: Int { instances.filter { $0.health == .healthy }.count }
        var healthWords: String {
            instances.isEmpty ? "no instances" : "\(healthy) of \(instances.count) healthy"
        }
    }

    var generation: UInt64
    var version: String
    var trustDomain: String
    var prometheus: String?
    var resources: [MeshResource]
    var proxies: [APIMessages.ProxyStatus]
    var services: [ServiceSummary]

    var staleProxies: Int { proxies.filter(\.stale).count }
    var rejectingProxies: Int { proxies.filter { $0.rejectedVersion != nil }.count }

    /// Declared caller → callee pairs, sorted.
    var declaredEdges: [(from: String, to: String)] {
        services.flatMap { service in service.calls.map { (from: service.name, to: $0) } }
    }

    static func load(_ controlPlane: MeshControlPlane, prometheus: String?) async -> DashboardModel {
        let generation = controlPlane.changes.generation
        let resources = (try? await controlPlane.list(kind: nil)) ?? []
        let proxies = (try? await controlPlane.proxies()) ?? []
        let registered = await controlPlane.registeredInstances
        let registrations = (try? controlPlane.store.registrations()) ?? []
        let version = (try? controlPlane.store.currentVersion()).map(String.init) ?? proxies.first?.currentVersion ?? "?"

        var instances: [String: [String: Instance]] = [:]
        var kinds: [String: Set<ResourceKind>] = [:]
        for resource in resources {
            kinds[resource.service, default: []].insert(resource.kind)
            if case .instance(let instance) = resource { instances[instance.service, default: [:]][instance.name] = instance }
        }
        for instance in registered { instances[instance.service, default: [:]][instance.name] = instance }
        var calls: [String: Set<String>] = [:]
        for registration in registrations {
            for callee in registration.dependencies ?? [] { calls[registration.instance.service, default: []].insert(callee) }
        }
        var proxyCount: [String: Int] = [:]
        for proxy in proxies { proxyCount[proxy.service, default: 0] += 1 }
        let names = Set(instances.keys).union(kinds.keys).union(calls.keys).union(calls.values.flatMap { $0 })
        let services = names.sorted().map { name in
            ServiceSummary(
                name: name, instances: (instances[name] ?? [:]).values.sorted { $0.name < $1.name },
                proxies: proxyCount[name] ?? 0, calls: (calls[name] ?? []).sorted(),
                kinds: ResourceKind.allCases.filter { kinds[name]?.contains($0) == true })
        }
        return DashboardModel(
            generation: generation, version: version, trustDomain: controlPlane.authority.trustDomain, prometheus: prometheus,
            resources: resources, proxies: proxies, services: services)
    }
}
