/// A `Service` resource (`kind: Service`): a named destination in the registry and the
/// protocol its app speaks.
///
/// Named `MeshService`, not `Service`, so it never shadows swift-service-lifecycle's `Service`
/// protocol, which every long-running part of SidecarCore conforms to.
///
/// The name is the service's identity everywhere: the `Host` callers use, the SPIFFE ID
/// `spiffe://<trust-domain>/service/<name>`, and the key of its Route, TrafficPolicy and
/// AuthorizationPolicy.
public struct MeshService: Sendable, Equatable {
    public var name: String
    public var resourceVersion: String?
    /// Default `http`.
    public var appProtocol: AppProtocol
    /// The app's port, informational; instances carry the ports that are dialled.
    public var port: Int?
    /// Virtual IPs that name this service: a connection intercepted on its way to one of them
    /// (`outbound.transparent`) goes to this service, as one to an instance's address does.
    public var addresses: [String]

    public init(
        name: String, resourceVersion: String? = nil, appProtocol: AppProtocol = .http, port: Int? = nil,
        addresses: [String] = []
    ) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.appProtocol = appProtocol
        self.port = port
        self.addresses = addresses
    }
}
