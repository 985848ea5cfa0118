#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The table of contents of a running sidecar: builds every part from the configuration
/// (TLS contexts, the route table, one proxy state per event loop, the outbound and inbound
/// listeners, config reload) and runs them as one `ServiceGroup` that drains on SIGTERM.
///
/// Start here to follow a request: `ProxyListener` accepts, `HTTPProxyHandler` routes and
/// relays, `ProxyLoopState` balances and pools, `UpstreamHandler` reads the response.
public final class Sidecar: Sendable {
    public struct Options: Sendable {
        public var workers: Int
        public var drainTimeout: TimeAmount
        public var accessLog: Bool
        /// How long a client may take to send a request head (slowloris protection): 408 after.
        public var requestHeadTimeout: TimeAmount
        /// How long a request body may pause between bytes (slowloris on the body): 408 after.
        public var requestBodyTimeout: TimeAmount
        /// How long a keep-alive connection may sit idle.
        public var idleTimeout: TimeAmount

        public init(
            workers: Int = System.coreCount, drainTimeout: TimeAmount = .seconds(30), accessLog: Bool = true,
            requestHeadTimeout: TimeAmount = .seconds(10), requestBodyTimeout: TimeAmount = .seconds(30),
            idleTimeout: TimeAmount = .hours(1)
        ) {
            self.requestBodyTimeout = requestBodyTimeout
            self.workers = workers
            self.drainTimeout = drainTimeout
            self.accessLog = accessLog
            self.requestHeadTimeout = requestHeadTimeout
            self.idleTimeout = idleTimeout
        }
    }

    /// A configuration that cannot run: a message naming the file and what to fix.
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    public let configPath: String
    public let options: Options
    private let logger: Logger

    public init(configPath: String, options: Options, logger: Logger = Logger(label: "sidecar")) {
        self.configPath = configPath
        self.options = options
        self.logger = logger
    }

    /// The TLS contexts made from one identity: the inbound server, the outbound HTTP client
    /// and the outbound TCP tunnel client.
    struct TLSContexts {
        var server: TLSContext
        var client: TLSContext
        var tunnel: TLSContext
    }

    /// Loads and checks everything that can be checked without binding sockets or calling
    /// the control plane: in static mode the certificate files and the route table; in dynamic
    /// mode the token and CA files.
    public static func prepare(_ configuration: SidecarConfiguration, metrics: SidecarMetrics? = nil, version: Int = 1) throws -> (
        server: TLSContext, client: TLSContext, tunnel: TLSContext, table: RouteTable
    ) {
        guard let files = configuration.tls else {
            throw StartupError(description: "dynamic mode gets its certificate from the control plane; use prepareDynamic")
        }
        let contexts = try makeTLS(configuration, identity: SidecarIdentity(files), metrics: metrics)
        let table = makeTable(configuration, resources: configuration.resources, version: version, metrics: metrics)
        return (contexts.server, contexts.client, contexts.tunnel, table)
    }

    /// Checks a dynamic-mode configuration offline: the token file holds a token and the CA
    /// file a usable trust bundle.
    public static func prepareDynamic(_ configuration: SidecarConfiguration) throws -> ControlPlaneSession.Credentials {
        guard let controlPlane = configuration.controlPlane else {
            throw StartupError(description: "no controlPlane in the configuration")
        }
        return try ControlPlaneSession.Credentials(controlPlane, trustDomain: configuration.trustDomain)
    }

    /// The server, client and tunnel contexts for `identity`, checking that its certificate is
    /// this service's SPIFFE ID.
    static func makeTLS(_ configuration: SidecarConfiguration, identity: SidecarIdentity, metrics: SidecarMetrics?) throws -> TLSContexts {
        var tls = TLSConfiguration.mesh(
            certificateChain: identity.certificateChain, privateKey: identity.privateKey,
            trustRoots: identity.trustBundle, trustDomain: configuration.trustDomain)
        let client = try TLSContext(configuration: tls, role: .client)
        // The inbound speaks HTTP/1.1, or carries raw bytes when the caller asks for `mesh-tcp`.
        tls.alpnProtocols = ["http/1.1", HTTPProxyHandler.tunnelALPN]
        let server = try TLSContext(configuration: tls, role: .server)
        tls.alpnProtocols = [HTTPProxyHandler.tunnelALPN]
        let tunnel = try TLSContext(configuration: tls, role: .client)
        let expected = SPIFFEID.service(configuration.service, trustDomain: configuration.trustDomain)
        let presented = server.leafCertificate?.spiffeID
        guard presented == expected else {
            throw StartupError(description: "\(identity.certificateChain.displayName): the certificate carries \(presented?.description ?? "no SPIFFE ID"), but this sidecar is \(expected?.description ?? configuration.service)")
        }
        metrics?.certificateExpiry.set(server.certificateExpiry ?? 0)
        return TLSContexts(server: server, client: client, tunnel: tunnel)
    }

    /// The route table for the bootstrap's own resources plus, in dynamic mode, a snapshot's
    /// (the snapshot's win where both name the same service).
    static func makeTable(
        _ configuration: SidecarConfiguration, resources: [MeshResource], version: Int, metrics: SidecarMetrics?
    ) -> RouteTable {
        metrics?.configurationVersion.set(Int64(version))
        return RouteTable(
            localService: configuration.service, trustDomain: configuration.trustDomain, resources: resources,
            version: version, metrics: metrics)
    }

    public func run() async throws {
        let configuration = try SidecarConfiguration.load(contentsOf: configPath)
        let metrics = SidecarMetrics()
        metrics.controlPlaneConnection.set(0)
        let contexts: TLSContexts
        let table: RouteTable
        var session: ControlPlaneSession?
        if configuration.controlPlane != nil {
            // Dynamic mode: an identity and a first snapshot before any listener opens.
            let started = try await ControlPlaneSession.start(
                configuration, credentials: try Self.prepareDynamic(configuration), metrics: metrics, logger: logger)
            contexts = started.contexts
            table = started.table
            session = started
        } else {
            let prepared = try Self.prepare(configuration, metrics: metrics)
            contexts = TLSContexts(server: prepared.server, client: prepared.client, tunnel: prepared.tunnel)
            table = prepared.table
        }
        let (server, client, tunnel) = (contexts.server, contexts.client, contexts.tunnel)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.workers))
        let serverTLS = TLSContextStore(server)
        let clientTLS = TLSContextStore(client)
        let tunnelTLS = TLSContextStore(tunnel)
        let loops = ProxyLoops(group: group, table: table, clientTLS: clientTLS, tunnelTLS: tunnelTLS, metrics: metrics)
        let readiness = ReadinessState(expectedListeners: 2 + configuration.outbound.tcp.count)
        let timeouts = HTTPProxyHandler.Timeouts(
            requestHead: options.requestHeadTimeout, requestBodyIdle: options.requestBodyTimeout, idle: options.idleTimeout)
        let tcpListeners = configuration.outbound.tcp.map { upstream in
            ProxyListener(
                name: "outbound-tcp-\(upstream.service)", address: upstream.listen, kind: .tcp(service: upstream.service),
                group: group, loops: loops, drainTimeout: options.drainTimeout, accessLog: options.accessLog,
                timeouts: timeouts, logger: logger, bound: ListenerAddressBox(), readiness: readiness)
        }
        let outbound = ProxyListener(
            name: "outbound", address: configuration.outbound.listen, kind: .outbound, group: group, loops: loops,
            drainTimeout: options.drainTimeout, accessLog: options.accessLog, timeouts: timeouts, logger: logger,
            bound: ListenerAddressBox(), readiness: readiness)
        let inboundBound = ListenerAddressBox()
        let inbound = ProxyListener(
            name: "inbound", address: configuration.inbound.listen,
            kind: .inbound(app: configuration.inbound.app, tls: serverTLS), group: group, loops: loops,
            drainTimeout: options.drainTimeout, accessLog: options.accessLog, timeouts: timeouts, logger: logger,
            bound: inboundBound, readiness: readiness)
        var effective = configuration
        effective.resources = session?.resources ?? configuration.resources
        let currentConfig = ConfigJSONBox(effective.json)
        // Static mode reloads its file; dynamic mode follows the control plane instead.
        let follower: any Service
        if let session {
            follower = try ControlPlaneAgent(
                session: session, configuration: configuration, loops: loops,
                stores: .init(server: serverTLS, client: clientTLS, tunnel: tunnelTLS), inboundPort: inboundBound,
                metrics: metrics, configJSON: currentConfig, logger: logger)
        } else {
            follower = ConfigReloader(
                configPath: configPath, current: configuration, loops: loops, serverTLS: serverTLS, clientTLS: clientTLS,
                tunnelTLS: tunnelTLS, metrics: metrics, configJSON: currentConfig, logger: logger)
        }
        let admin = AdminServer(
            host: configuration.adminListen.host, port: configuration.adminListen.port,
            providers: AdminProviders(
                metrics: metrics.registry,
                readiness: { readiness.readiness },
                config: { currentConfig.value },
                clusters: { loops.clustersJSON() }),
            group: group)
        let group_ = ServiceGroup(
            configuration: .init(
                // Shut down in reverse: listeners drain first while admin still answers /ready with 503.
                services: [.init(service: admin), .init(service: outbound), .init(service: inbound)]
                    + tcpListeners.map { .init(service: $0) }
                    + [.init(service: follower, successTerminationBehavior: .ignore)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        logger.info("sidecar starting", metadata: ["service": "\(configuration.service)", "workers": "\(options.workers)"])
        try await group_.run()
        try await group.shutdownGracefully()
    }
}

/// Reloads the static config on SIGHUP: a valid file swaps the route table and certificates
/// atomically for new requests and connections; an invalid one is logged and ignored.
final class ConfigReloader: Service, Sendable {
    let configPath: String
    let loops: ProxyLoops
    let serverTLS: TLSContextStore
    let clientTLS: TLSContextStore
    let tunnelTLS: TLSContextStore
    let metrics: SidecarMetrics
    let configJSON: ConfigJSONBox
    let logger: Logger

    init(
        configPath: String, current: SidecarConfiguration, loops: ProxyLoops, serverTLS: TLSContextStore,
        clientTLS: TLSContextStore, tunnelTLS: TLSContextStore, metrics: SidecarMetrics, configJSON: ConfigJSONBox, logger: Logger
    ) {
        self.configJSON = configJSON
        self.metrics = metrics
        self.tunnelTLS = tunnelTLS
        self.configPath = configPath
        self.loops = loops
        self.serverTLS = serverTLS
        self.clientTLS = clientTLS
        self.logger = logger
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        // A change of the file's modification time reloads too (checked every second).
        let changes = AsyncStream<Void> { continuation in
            let task = Task {
                var last = Self.modificationTime(configPath)
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    let now = Self.modificationTime(configPath)
                    if now != last {
                        last = now
                        continuation.yield()
                    }
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
        await withTaskGroup(of: Void.self) { group in
            let (merged, continuation) = AsyncStream<Void>.makeStream()
            group.addTask {
                for await _ in signals { continuation.yield() }
            }
            group.addTask {
                for await _ in changes { continuation.yield() }
            }
            group.addTask { await self.reloadLoop(merged) }
            await withGracefulShutdownHandler {
                await group.next()
            } onGracefulShutdown: {
                continuation.finish()
            }
            group.cancelAll()
        }
    }

    static func modificationTime(_ path: String) -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }

    private func reloadLoop(_ triggers: AsyncStream<Void>) async {
        var version = 1
        for await _ in triggers {
            do {
                let configuration = try SidecarConfiguration.load(contentsOf: configPath)
                let (server, client, tunnel, table) = try Sidecar.prepare(
                    configuration, metrics: metrics, version: version + 1)
                version += 1
                serverTLS.replace(with: server)
                clientTLS.replace(with: client)
                tunnelTLS.replace(with: tunnel)
                loops.replaceTable(table)
                configJSON.set(configuration.json)
                logger.info("configuration reloaded", metadata: ["version": "\(version)"])
            } catch {
                logger.error("reload refused, keeping the running configuration: \(error)")
            }
        }
    }
}

/// The effective configuration as JSON for `/config`, replaced on reload.
final class ConfigJSONBox: Sendable {
    private let box: NIOLockedValueBox<String>
    init(_ value: String) { box = NIOLockedValueBox(value) }
    var value: String { box.withLockedValue { $0 } }
    func set(_ value: String) { box.withLockedValue { $0 = value } }
}
