import NIOConcurrencyHelpers

/// Makes a configuration the running one, the same way for static mode's reload (the whole
/// file again) and for dynamic mode (a control-plane snapshot, a renewed certificate): what
/// the new configuration needs — TLS contexts from its identity, a route table from its
/// resources — is built first, and swapped in only once all of it is built, so one that cannot
/// be built is refused whole and the running configuration stays. New requests and connections
/// use what was applied; open connections keep their TLS context, in-flight requests their table.
///
/// It also keeps what `/config` shows (the effective configuration as JSON) and sets
/// `sidecar_config_version` and `sidecar_cert_expiry_timestamp_seconds`. Thread-safe; callers
/// apply one change at a time (the reloader's loop, the control-plane agent's actor).
public final class ConfigApplier: Sendable {
    /// The TLS contexts the listeners and loops take new connections' contexts from.
    public let tls: TLSContextSet
    private let loops: ProxyLoops
    private let metrics: SidecarMetrics
    private let state: NIOLockedValueBox<State>

    private struct State {
        /// The configuration the running one was made from: static mode's last file, or dynamic
        /// mode's bootstrap file (whose resources a snapshot extends).
        var configuration: SidecarConfiguration
        var version: Int
        /// `/config`.
        var json: String
        /// `/ready`'s `source`.
        var source: ConfigSource
        /// Gateway: the HTTPS listener's server certificates (`adoptGatewayTLS`).
        var gatewayTLS: TLSContextStore?
    }

    /// Takes over the configuration the loops and `tls` were opened with: `table` was built
    /// from `configuration` and `resources`.
    init(
        configuration: SidecarConfiguration, resources: [MeshResource], table: RouteTable, tls: TLSContextSet,
        loops: ProxyLoops, metrics: SidecarMetrics, source: ConfigSource = .file
    ) {
        self.tls = tls
        self.loops = loops
        self.metrics = metrics
        state = NIOLockedValueBox(State(
            configuration: configuration, version: table.version, json: Self.json(configuration, resources: resources),
            source: source))
        metrics.configurationVersion.set(Int64(table.version))
        metrics.certificateExpiry.set(tls.server.current.certificateExpiry ?? 0)
    }

    /// The effective configuration as JSON (`/config`).
    public var configurationJSON: String { state.withLockedValue { $0.json } }

    /// The version of the route table in use (`sidecar_config_version`).
    public var version: Int { state.withLockedValue { $0.version } }

    /// Where the configuration in use came from (`/ready`).
    public var source: ConfigSource { state.withLockedValue { $0.source } }

    /// Dynamic mode: the control plane answered, so what runs is live (or about to be: a newer
    /// snapshot follows at once) rather than the saved last-known-good state.
    package func markLive() {
        state.withLockedValue { $0.source = .live }
    }

    // MARK: Building (checks only, nothing swapped)

    /// Everything a static configuration needs to run, built and checked without binding a
    /// socket: the TLS contexts from its certificate files and its route table.
    public static func prepare(
        _ configuration: SidecarConfiguration, version: Int = 1, metrics: SidecarMetrics? = nil
    ) throws -> (contexts: TLSContextSet.Contexts, table: RouteTable) {
        guard let files = configuration.tls else {
            throw Sidecar.StartupError(description: "dynamic mode gets its certificate from the control plane")
        }
        let contexts = try TLSContextSet.Contexts(configuration, identity: SidecarIdentity(files))
        let table = makeTable(configuration, resources: configuration.resources, version: version, metrics: metrics)
        // A JWKS that cannot be read fails closed at run time; at start it is a config error.
        if let problem = table.gateway.authenticators.values.compactMap(\.keysProblem).sorted().first {
            throw Sidecar.StartupError(description: problem)
        }
        return (contexts, table)
    }

    /// The route table for `resources` (in dynamic mode, the bootstrap's own followed by a
    /// snapshot's, which win where both name the same service).
    static func makeTable(
        _ configuration: SidecarConfiguration, resources: [MeshResource], version: Int, metrics: SidecarMetrics?
    ) -> RouteTable {
        RouteTable(
            localService: configuration.service, trustDomain: configuration.trustDomain, resources: resources,
            version: version, metrics: metrics)
    }

    // MARK: Applying

    /// Static mode's reload: `configuration`'s certificate files (the gateway's server
    /// certificates too) and resources replace the running ones; the version moves by one.
    /// Throws, changing nothing, when it cannot be built.
    @discardableResult
    func apply(_ configuration: SidecarConfiguration) throws -> Int {
        let version = self.version + 1
        let (contexts, table) = try Self.prepare(configuration, version: version, metrics: metrics)
        let gateway = try gatewayServerContext(configuration)
        tls.replace(with: contexts)
        if let (store, context) = gateway { store.replace(with: context) }
        metrics.certificateExpiry.set(contexts.certificateExpiry)
        install(table, configuration: configuration, resources: configuration.resources)
        return version
    }

    /// Dynamic mode: a snapshot's resources, on top of the bootstrap's own, at the snapshot's
    /// version. Throws `SnapshotRejection`, changing nothing, when `SnapshotCheck` refuses it.
    package func apply(snapshot resources: [MeshResource], version: Int64) throws(SnapshotRejection) {
        let configuration = state.withLockedValue { $0.configuration }
        if let problem = SnapshotCheck.problem(configuration, resources: resources) {
            throw SnapshotRejection(version: version, reason: problem)
        }
        let all = configuration.resources + resources
        install(
            Self.makeTable(configuration, resources: all, version: Int(version), metrics: metrics),
            configuration: configuration, resources: all)
    }

    /// Dynamic mode: a renewed certificate. Throws, changing nothing, when the certificate is
    /// not this service's or the contexts cannot be built.
    package func apply(identity: SidecarIdentity) throws {
        let configuration = state.withLockedValue { $0.configuration }
        let contexts = try TLSContextSet.Contexts(configuration, identity: identity)
        tls.replace(with: contexts)
        metrics.certificateExpiry.set(contexts.certificateExpiry)
    }

    /// Gateway: new HTTPS connections take their server certificate from `store`, which a
    /// reload refills from the certificate files (`reloadGatewayCertificates`, `apply`).
    func adoptGatewayTLS(_ store: TLSContextStore) {
        state.withLockedValue { $0.gatewayTLS = store }
    }

    /// Gateway, dynamic mode (SIGHUP): the HTTPS listener's certificate files read again.
    /// Throws, changing nothing, when one does not load.
    func reloadGatewayCertificates() throws {
        let configuration = state.withLockedValue { $0.configuration }
        if let (store, context) = try gatewayServerContext(configuration) { store.replace(with: context) }
    }

    /// The gateway listener's store and a server context from `configuration`'s files.
    private func gatewayServerContext(_ configuration: SidecarConfiguration) throws -> (TLSContextStore, TLSContext)? {
        guard let store = state.withLockedValue({ $0.gatewayTLS }), let https = configuration.gateway?.https else { return nil }
        do {
            return (store, try GatewayTLS.serverContext(https))
        } catch {
            throw Sidecar.StartupError(description: "gateway.https.certificates: \(error)")
        }
    }

    private func install(_ table: RouteTable, configuration: SidecarConfiguration, resources: [MeshResource]) {
        loops.replaceTable(table)
        let json = Self.json(configuration, resources: resources)
        state.withLockedValue {
            $0.configuration = configuration
            $0.version = table.version
            $0.json = json
        }
        metrics.configurationVersion.set(Int64(table.version))
    }

    private static func json(_ configuration: SidecarConfiguration, resources: [MeshResource]) -> String {
        var effective = configuration
        effective.resources = resources
        return effective.json
    }
}

/// A snapshot this sidecar refused: its version and why, as the heartbeat reports it.
public struct SnapshotRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var version: Int64
    public var reason: String

    public init(version: Int64, reason: String) {
        self.version = version
        self.reason = reason
    }

    public var description: String { "snapshot \(version) refused: \(reason)" }
}
