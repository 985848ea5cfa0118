import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The table of contents of a running sidecar: builds every part from the configuration
/// (TLS contexts, the route table, one proxy state per event loop, the outbound and inbound
/// listeners, the admin server, and what keeps the configuration current: `ConfigReloader` in
/// static mode, the control plane's follower in dynamic mode, both through one
/// `ConfigApplier`) and runs them as one `ServiceGroup` that drains on SIGTERM.
///
/// Start here to follow a request: `ProxyListener` accepts, `HTTPProxyHandler` routes and
/// relays, a `LoopContext` per loop holds the route table, one `Cluster` per destination (balancer, breaker, budget, outliers) and the `ConnectionPool`, `UpstreamHandler` reads the response.
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
        /// Supervisor mode: the app's command line (`sidecar --config F -- CMD ARGS…`), started
        /// once the sidecar is ready; empty runs the sidecar alone.
        public var appCommand: [String]

        public init(
            workers: Int = System.coreCount, drainTimeout: TimeAmount = .seconds(30), accessLog: Bool = true,
            requestHeadTimeout: TimeAmount = .seconds(10), requestBodyTimeout: TimeAmount = .seconds(30),
            idleTimeout: TimeAmount = .hours(1), appCommand: [String] = []
        ) {
            self.appCommand = appCommand
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

        public init(description: String) {
            self.description = description
        }
    }

    /// Dynamic mode's start as this library sees it (the control-plane API lives above it, in
    /// SidecarDiscovery): the identity and first resources the listeners open with, and the
    /// service that then keeps them current.
    public struct ControlPlaneStart: Sendable {
        /// From the certificate the control plane signed for this sidecar's key.
        public var contexts: TLSContextSet.Contexts
        /// The first snapshot's resources (the bootstrap file's own come first) and its version.
        public var resources: [MeshResource]
        public var version: Int64
        /// `live`, or `lastKnownGood` when the control plane did not answer and the sidecar
        /// starts from the state it saved (fail-static).
        public var source: ConfigSource
        /// Registers, heartbeats, watches and renews, applying what it receives through the
        /// applier; the closure reads the port the inbound bound (nil until it has).
        public var follower: @Sendable (ConfigApplier, _ inboundPort: @escaping @Sendable () -> Int?) throws -> any Service

        public init(
            contexts: TLSContextSet.Contexts, resources: [MeshResource], version: Int64, source: ConfigSource = .live,
            follower: @escaping @Sendable (ConfigApplier, _ inboundPort: @escaping @Sendable () -> Int?) throws -> any Service
        ) {
            self.contexts = contexts
            self.resources = resources
            self.version = version
            self.source = source
            self.follower = follower
        }
    }

    /// Starts dynamic mode for a bootstrap configuration with `controlPlane:`: waits out an
    /// unreachable control plane, throws what ends the start. Its connections use the
    /// sidecar's event loops (no group, no threads of their own).
    public typealias ControlPlaneConnector =
        @Sendable (SidecarConfiguration, SidecarMetrics, Logger, any EventLoopGroup) async throws -> ControlPlaneStart

    public let configPath: String
    public let options: Options
    let logger: Logger
    private let connectControlPlane: ControlPlaneConnector?

    /// - Parameter controlPlane: how dynamic mode starts; a config with `controlPlane:` needs it.
    public init(
        configPath: String, options: Options, logger: Logger = Logger(label: "sidecar"),
        controlPlane: ControlPlaneConnector? = nil
    ) {
        self.configPath = configPath
        self.options = options
        self.logger = logger
        self.connectControlPlane = controlPlane
    }

    /// Runs until a graceful-shutdown signal (or, in supervisor mode, until the app exits);
    /// returns the app's exit status in supervisor mode, else nil.
    @discardableResult
    public func run() async throws -> Int32? {
        let configuration = try SidecarConfiguration.load(contentsOf: configPath)
        let metrics = SidecarMetrics(mode: configuration.controlPlane == nil ? .static : .dynamic)
        // What the listeners open with: the files (static mode), or an identity and a first
        // snapshot from the control plane (dynamic mode), before any listener opens.
        let contexts: TLSContextSet.Contexts
        let table: RouteTable
        let resources: [MeshResource]
        var controlPlane: ControlPlaneStart?
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.workers))
        do {
            if configuration.controlPlane != nil {
                guard let connectControlPlane else {
                    throw StartupError(description: "controlPlane: this build of the sidecar has no dynamic mode")
                }
                let started = try await connectControlPlane(configuration, metrics, logger, group)
                contexts = started.contexts
                resources = configuration.resources + started.resources
                table = ConfigApplier.makeTable(configuration, resources: resources, version: Int(started.version), metrics: metrics)
                controlPlane = started
            } else {
                (contexts, table) = try ConfigApplier.prepare(configuration, metrics: metrics)
                resources = configuration.resources
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        let tls = TLSContextSet(contexts)
        let spanExport = configuration.tracing.map { SpanExport($0, service: configuration.service, metrics: metrics) }
        let loops = ProxyLoops(
            group: group, table: table, clientTLS: tls.client, tunnelTLS: tls.tunnel, http2TLS: tls.http2Client,
            metrics: metrics, spanExport: spanExport)
        let applier = ConfigApplier(
            configuration: configuration, resources: resources, table: table, tls: tls, loops: loops, metrics: metrics,
            source: controlPlane?.source ?? .file)
        let timeouts = HTTPProxyHandler.Timeouts(
            requestHead: options.requestHeadTimeout, requestBodyIdle: options.requestBodyTimeout, idle: options.idleTimeout)
        if let gateway = configuration.gateway {
            return try await runGateway(
                gateway, configuration: configuration, group: group, loops: loops, applier: applier, metrics: metrics,
                timeouts: timeouts, controlPlane: controlPlane)
        }
        let readiness = ReadinessState(expectedListeners: 2 + configuration.outbound.tcp.count)
        let tcpListeners = configuration.outbound.tcp.enumerated().map { index, upstream in
            ProxyListener(
                name: "outbound-tcp-\(upstream.service)", address: upstream.listen, configKey: "outbound.tcp[\(index)].listen",
                kind: .tcp(service: upstream.service),
                group: group, loops: loops, drainTimeout: options.drainTimeout, accessLog: options.accessLog,
                timeouts: timeouts, logger: logger, bound: ListenerAddressBox(), readiness: readiness)
        }
        let outbound = ProxyListener(
            name: "outbound", address: configuration.outbound.listen, configKey: "outbound.listen",
            kind: configuration.outbound.transparent ? .transparentOutbound(unknown: configuration.outbound.unknown) : .outbound,
            group: group, loops: loops,
            drainTimeout: options.drainTimeout, accessLog: options.accessLog, timeouts: timeouts, logger: logger,
            bound: ListenerAddressBox(), readiness: readiness)
        let inboundBound = ListenerAddressBox()
        let inbound = ProxyListener(
            name: "inbound", address: configuration.inbound.listen, configKey: "inbound.listen",
            kind: .inbound(app: configuration.inbound.app, tls: tls.server, appProtocol: configuration.inbound.appProtocol),
            group: group, loops: loops,
            drainTimeout: options.drainTimeout, accessLog: options.accessLog, timeouts: timeouts, logger: logger,
            bound: inboundBound, readiness: readiness)
        // Static mode reloads its file; dynamic mode follows the control plane instead.
        let follower: any Service =
            try controlPlane.map { try $0.follower(applier, { inboundBound.value }) }
            ?? ConfigReloader(configPath: configPath, applier: applier, logger: logger)
        let admin = adminServer(configuration, group: group, loops: loops, applier: applier, metrics: metrics, readiness: readiness)
        // Supervisor mode: the app sits between the outbound side (stopped after it exits) and
        // the inbound (drained first), and its own exit ends the sidecar.
        let app = options.appCommand.isEmpty
            ? nil : AppSupervisor(command: options.appCommand, readiness: readiness, logger: logger)
        let outboundSide: [ServiceGroupConfiguration.ServiceConfiguration] =
            [.init(service: outbound)] + tcpListeners.map { .init(service: $0) }
        let appSide: [ServiceGroupConfiguration.ServiceConfiguration] =
            app.map { [.init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup)] } ?? []
        logger.info("sidecar starting", metadata: ["service": "\(configuration.service)", "workers": "\(options.workers)"])
        // Shut down in reverse: the follower deregisters, the inbound drains while admin
        // still answers /ready with 503, the app exits, then the outbound side stops.
        try await run(
            [.init(service: admin)] + outboundSide + appSide + [.init(service: inbound)]
                + [.init(service: follower, successTerminationBehavior: .ignore)],
            eventLoops: group, loops: loops)
        return app?.exitStatus
    }

    /// Runs `services` as one group until SIGTERM/SIGINT (started in order, stopped in reverse),
    /// then flushes the access logs and stops the event loops.
    func run(
        _ services: [ServiceGroupConfiguration.ServiceConfiguration], eventLoops: MultiThreadedEventLoopGroup,
        loops: ProxyLoops
    ) async throws {
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await loops.flushAccessLogs()
            await loops.flushSpans()
            throw error
        }
        await loops.flushAccessLogs()
        await loops.flushSpans()
        try await eventLoops.shutdownGracefully()
    }

    /// The admin server: `/metrics`, `/ready`, `/config`, `/clusters`, `/explain` (on a gateway,
    /// of a request to one of `gatewayListeners`).
    func adminServer(
        _ configuration: SidecarConfiguration, group: EventLoopGroup, loops: ProxyLoops, applier: ConfigApplier,
        metrics: SidecarMetrics, readiness: ReadinessState, gatewayListeners: Explain.Listeners? = nil
    ) -> AdminServer {
        AdminServer(
            host: configuration.adminListen.host, port: configuration.adminListen.port,
            providers: AdminProviders(
                metrics: metrics.registry,
                readiness: { readiness.readiness },
                source: { applier.source },
                config: { applier.configurationJSON },
                clusters: { loops.clustersJSON() },
                explain: { uri in
                    loops.explain(uri: uri, certificateExpiry: metrics.certificateExpiry.value, gateway: gatewayListeners)
                }),
            group: group)
    }
}
