/// An `Instance` resource: one reachable endpoint of a service (the inbound port of that
/// instance's sidecar) with its labels and health.
///
/// `name` defaults to `<service>-<address>-<port>`. Instances applied by an operator stay
/// until deleted unless they set `ttl`; sidecar-registered ones expire on missed heartbeats.
public struct Instance: Sendable, Equatable {
    public enum Health: String, Sendable, Equatable, CaseIterable {
        case healthy
        case unhealthy
    }

    public var name: String
    public var resourceVersion: String?
    public var service: String
    /// An IP literal (IPv6 without brackets) or a DNS name.
    public var address: String
    public var port: Int
    public var labels: [String: String]
    /// Default `healthy`.
    public var health: Health
    /// If set, the instance is marked unhealthy and then removed when not renewed in time.
    public var ttl: MeshDuration?

    public init(
        name: String? = nil,
        resourceVersion: String? = nil,
        service: String,
        address: String,
        port: Int,
        labels: [String: String] = [:],
        health: Health = .healthy,
        ttl: MeshDuration? = nil
    ) {
        self.name = name ?? Instance.defaultName(service: service, address: address, port: port)
        self.resourceVersion = resourceVersion
        self.service = service
        self.address = address
        self.port = port
        self.labels = labels
        self.health = health
        self.ttl = ttl
    }

    public static func defaultName(service: String, address: String, port: Int) -> String {
        "\(service)-\(address)-\(port)"
    }

    /// Where the caller's sidecar dials.
    public var endpoint: HostPort { HostPort(host: address, port: port) }
}
