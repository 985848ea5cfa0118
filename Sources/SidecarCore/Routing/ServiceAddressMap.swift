/// Which service an intercepted connection was going to (`outbound.transparent`): the original
/// destination's IP is that of a known Instance, or one of a Service's `addresses` (virtual
/// IPs). Built once per snapshot with the `RouteTable`, read without a lock per connection.
///
/// Several services may claim one IP (sidecars of different services on one host): then the
/// Service whose `port` is the destination port wins, and with no such Service the address is
/// ambiguous and resolves to nothing (the connection is treated as outside the mesh).
public struct ServiceAddressMap: Sendable {
    /// Canonical IP text → the services claiming it, sorted.
    private let services: [String: [String]]
    /// Each Service's declared app port, for telling apart services on one IP.
    private let ports: [String: Int]
    /// Services declared `protocol: tcp`: their connections are tunnelled without waiting for
    /// the client's first bytes (a server-speaks-first protocol would wait out detection).
    private let tcpServices: Set<String>

    public init(resources: [MeshResource]) {
        var claims: [String: Set<String>] = [:]
        var ports: [String: Int] = [:]
        var tcpServices: Set<String> = []
        for resource in resources {
            switch resource {
            case .instance(let instance):
                claims[IPText.canonical(instance.address), default: []].insert(instance.service)
            case .service(let service):
                if let port = service.port { ports[service.name] = port }
                if service.appProtocol == .tcp { tcpServices.insert(service.name) }
                for address in service.addresses {
                    claims[IPText.canonical(address), default: []].insert(service.name)
                }
            default:
                continue
            }
        }
        self.services = claims.mapValues { $0.sorted() }
        self.ports = ports
        self.tcpServices = tcpServices
    }

    /// Whether `service`'s Service resource says `protocol: tcp`.
    public func isDeclaredTCP(_ service: String) -> Bool { tcpServices.contains(service) }

    /// The service `address:port` belongs to, or nil when no service (or more than one) claims it.
    public func service(address: String, port: Int) -> String? {
        guard let candidates = services[address] else { return nil }
        if candidates.count == 1 { return candidates[0] }
        let matching = candidates.filter { ports[$0] == port }
        return matching.count == 1 ? matching[0] : nil
    }

    public var isEmpty: Bool { services.isEmpty }
}
