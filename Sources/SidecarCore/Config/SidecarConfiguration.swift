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
        /// `inbound.transparent`: `sidecar iptables --inbound-ports` redirects connections to the
        /// app's ports here, so the inbound listens where other hosts reach it (not loopback).
        public var transparent: Bool

        public init(
            listen: HostPort = MeshDefaults.inboundListen, app: HostPort, appProtocol: AppProtocol = .http,
            transparent: Bool = false
        ) {
            self.listen = listen
            self.app = app
            self.appProtocol = appProtocol
            self.transparent = transparent
        }
    }

    /// Outbound: the local app's HTTP proxy, plus one local port per L4 upstream.
    public struct Outbound: Sendable, Equatable {
        public var listen: HostPort
        public var tcp: [TCPUpstream]
        /// `outbound.transparent`: the outbound port also takes connections `sidecar iptables`
        /// redirected, and sends each where its original destination says.
        public var transparent: Bool
        /// `outbound.unknown`: what an intercepted connection to an address no service claims gets.
        public var unknown: UnknownDestinationPolicy

        public init(
            listen: HostPort = MeshDefaults.outboundListen, tcp: [TCPUpstream] = [], transparent: Bool = false,
            unknown: UnknownDestinationPolicy = .passthrough
        ) {
            self.listen = listen
            self.tcp = tcp
            self.transparent = transparent
            self.unknown = unknown
        }
    }

    /// An intercepted connection whose original destination is no mesh service's address.
    public enum UnknownDestinationPolicy: String, Sendable, Equatable, CaseIterable {
        /// Connect to the original destination as if there were no sidecar (plain TCP).
        case passthrough
        /// Close the connection: only the registry's services are reachable.
        case registryOnly = "registry-only"
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

    /// Optional OTLP/HTTP export of one span per proxied request (`tracing:`).
    public struct Tracing: Sendable, Equatable {
        /// The collector's OTLP/HTTP traces endpoint: plain `http://host:port`, spans POSTed as
        /// OTLP JSON to `path` (`/v1/traces` when the address gives none).
        public var endpoint: HostPort
        public var path: String
        /// Percent of traces exported (0…100), decided from the trace id so every hop of a
        /// trace makes the same choice; a `traceparent` whose sampled flag is off is never exported.
        public var sampling: Double

        public init(endpoint: HostPort, path: String = "/v1/traces", sampling: Double = 100) {
            self.endpoint = endpoint
            self.path = path
            self.sampling = sampling
        }

        /// `http://host:port/path` as written in the file.
        public var url: String { "http://\(endpoint)\(path)" }
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
    /// nil: no span export.
    public var tracing: Tracing?

    public init(
        service: String,
        inbound: Inbound,
        outbound: Outbound = Outbound(),
        adminListen: HostPort = MeshDefaults.adminListen,
        trustDomain: String = MeshDefaults.trustDomain,
        tls: TLSFiles? = nil,
        controlPlane: ControlPlane? = nil,
        resources: [MeshResource] = [],
        tracing: Tracing? = nil,
        gateway: GatewayListeners? = nil
    ) {
        self.tracing = tracing
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
