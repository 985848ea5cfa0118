import NIOCore
import NIOPosix
import ServiceLifecycle

/// A sidecar with `gateway:` (DESIGN.md "Gateway: the mesh's front door"): instead of an
/// inbound and an outbound it runs the external listeners (HTTPS first, so a redirecting plain
/// listener knows its port), plus admin and what keeps the configuration current. Calls into
/// the mesh use the sidecar's own identity through the same pools as an outbound would.
/// SIGHUP reads the server certificates again (static mode: with the whole file; dynamic
/// mode: `GatewayCertificateReloader`); a file that does not load is refused and logged.
extension Sidecar {
    func runGateway(
        _ gateway: GatewayListeners, configuration: SidecarConfiguration, group: MultiThreadedEventLoopGroup,
        loops: ProxyLoops, applier: ConfigApplier, metrics: SidecarMetrics, timeouts: HTTPProxyHandler.Timeouts,
        controlPlane: ControlPlaneStart?
    ) async throws -> Int32? {
        let readiness = ReadinessState(expectedListeners: (gateway.http == nil ? 0 : 1) + (gateway.https == nil ? 0 : 1))
        var listeners: [ProxyListener] = []
        let httpsBound = ListenerAddressBox()
        let httpBound = ListenerAddressBox()
        let roles = Explain.Listeners(
            http: gateway.http.map { GatewayListenerRole(secure: false, redirectToHttps: $0.redirectToHttps, httpsPort: { httpsBound.value }) },
            https: gateway.https.map { _ in GatewayListenerRole(secure: true) })
        if let https = gateway.https, let role = roles.https {
            let context: TLSContext
            do {
                context = try GatewayTLS.serverContext(https)
            } catch {
                throw StartupError(description: "gateway.https.certificates: \(error)")
            }
            let store = TLSContextStore(context)
            applier.adoptGatewayTLS(store)
            listeners.append(ProxyListener(
                name: "gateway-https", address: https.listen, configKey: "gateway.https.listen",
                kind: .gateway(role, tls: store),
                group: group, loops: loops, drainTimeout: options.drainTimeout, accessLog: options.accessLog,
                timeouts: timeouts, logger: logger, bound: httpsBound, readiness: readiness))
        }
        if let http = gateway.http, let role = roles.http {
            listeners.append(ProxyListener(
                name: "gateway-http", address: http.listen, configKey: "gateway.http.listen", kind: .gateway(role, tls: nil),
                group: group, loops: loops, drainTimeout: options.drainTimeout, accessLog: options.accessLog,
                timeouts: timeouts, logger: logger, bound: httpBound, readiness: readiness))
        }
        // Dynamic mode registers the gateway's own instance at the port it serves on.
        let follower: any Service =
            try controlPlane.map { try $0.follower(applier, { httpsBound.value ?? httpBound.value }) }
            ?? ConfigReloader(configPath: configPath, applier: applier, logger: logger)
        let admin = adminServer(
            configuration, group: group, loops: loops, applier: applier, metrics: metrics, readiness: readiness, gatewayListeners: roles)
        let certificates: [ServiceGroupConfiguration.ServiceConfiguration] =
            controlPlane != nil && gateway.https != nil
            ? [.init(service: GatewayCertificateReloader(applier: applier, logger: logger), successTerminationBehavior: .ignore)] : []
        logger.info("gateway starting", metadata: ["service": "\(configuration.service)", "workers": "\(options.workers)"])
        try await run(
            [.init(service: admin)] + listeners.map { .init(service: $0) }
                + [.init(service: follower, successTerminationBehavior: .ignore)] + certificates,
            eventLoops: group, loops: loops)
        return nil
    }
}
