/// The sidecar's bootstrap file (`sidecar --config web.yaml`): which service it fronts, where
/// it listens, how it gets its identity (static `tls` files or a `controlPlane`), and in static
/// mode the resources it would otherwise receive.
///
/// Immutable once loaded; every file path is already resolved against the config file's
/// directory. Exactly one of `tls` (static mode) and `controlPlane` (dynamic mode) is set.
public struct SidecarConfiguration: Sendable, Equatable {
    /// Inbound: mTLS from other sidecars, handed to the app on localhost.
    public struct Inbound: Sendable, Equatable {
        public var listen: HostPort
        public var app: HostPort
        public var appProtocol: AppProtocol

        public init(listen: HostPort = MeshDefaults.inboundListen, app: HostPort, appProtocol: AppProtocol = .http) {
            self.listen = listen
            self.app = app
            self.appProtocol = appProtocol
        }
    }

    /// Outbound: the local app's HTTP proxy, plus one local port per L4 upstream.
    public struct Outbound: Sendable, Equatable {
        public var listen: HostPort
        public var tcp: [TCPUpstream]

        public init(listen: HostPort = MeshDefaults.outboundListen, tcp: [TCPUpstream] = []) {
            self.listen = listen
            self.tcp = tcp
        }
    }

    /// A local port whose connections are carried, as bytes, to `service`.
    public struct TCPUpstream: Sendable, Equatable {
        public var listen: HostPort
        public var service: String

        public init(listen: HostPort, service: String) {
            self.listen = listen
            self.service = service
        }
    }

    /// Static mode: PEM files made by any CA.
    public struct TLSFiles: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String
        public var trustBundle: String

        public init(certificate: String, privateKey: String, trustBundle: String) {
            self.certificate = certificate
            self.privateKey = privateKey
            self.trustBundle = trustBundle
        }
    }

    /// Dynamic mode: where the control plane is, the join token proving our service, the CA
    /// that the control plane's certificate must chain to (the token is sent to nobody else),
    /// and what to register: the address other sidecars dial, labels, and the services we call.
    public struct ControlPlane: Sendable, Equatable {
        /// `https://host:port`: the first of `addresses`.
        public var address: String { addresses[0] }
        /// The control-plane replicas, in the order tried: the sidecar uses one and moves to the
        /// next when it fails. Never empty.
        public var addresses: [String]
        public var tokenFile: String
        /// The control plane's trust bundle (`control-plane ca bundle`, or `ca.pem` in its data dir).
        public var caFile: String
        /// The inbound address registered for other sidecars to dial; nil means `inbound.listen`
        /// (with the port actually bound when it is 0).
        public var advertise: HostPort?
        /// The instance's labels (`version: v2` for a canary subset).
        public var labels: [String: String]
        /// The services this one calls; nil means all (the snapshot then holds every service).
        public var dependencies: [String]?
        /// Where the last applied snapshot and the current certificate and key are kept, so a
        /// sidecar restarted while no control plane answers can serve from them (fail-static).
        /// Default `sidecar-state` beside the config file.
        public var stateDirectory: String

        public init(
            address: String, tokenFile: String, caFile: String, advertise: HostPort? = nil,
            labels: [String: String] = [:], dependencies: [String]? = nil,
            stateDirectory: String = MeshDefaults.stateDirectory, moreAddresses: [String] = []
        ) {
            self.stateDirectory = stateDirectory
            self.addresses = [address] + moreAddresses
            self.tokenFile = tokenFile
            self.caFile = caFile
            self.advertise = advertise
            self.labels = labels
            self.dependencies = dependencies
        }
    }

    public var service: String
    public var inbound: Inbound
    public var outbound: Outbound
    public var adminListen: HostPort
    public var trustDomain: String
    public var tls: TLSFiles?
    public var controlPlane: ControlPlane?
    /// Set instead of `inbound` on the mesh's front door: its external listeners.
    public var gateway: GatewayListeners?
    /// Static mode's resources (also allowed beside a control plane as a starting point).
    public var resources: [MeshResource]

    public init(
        service: String,
        inbound: Inbound,
        outbound: Outbound = Outbound(),
        adminListen: HostPort = MeshDefaults.adminListen,
        trustDomain: String = MeshDefaults.trustDomain,
        tls: TLSFiles? = nil,
        controlPlane: ControlPlane? = nil,
        resources: [MeshResource] = [],
        gateway: GatewayListeners? = nil
    ) {
        self.gateway = gateway
        self.service = service
        self.inbound = inbound
        self.outbound = outbound
        self.adminListen = adminListen
        self.trustDomain = trustDomain
        self.tls = tls
        self.controlPlane = controlPlane
        self.resources = resources
    }

    /// `spiffe://<trust-domain>/service/<service>`: the identity this sidecar presents.
    public var spiffeID: String { "spiffe://\(trustDomain)/service/\(service)" }
}
