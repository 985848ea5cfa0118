#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import MeshAPI
import ServiceLifecycle
import SidecarCore

/// Keeps a dynamic-mode sidecar in step with the control plane, as one lifecycle `Service`
/// with three loops:
/// - **register and heartbeat**: registers this instance (its inbound address, labels and
///   dependencies) once the inbound is bound, then heartbeats at a third of the TTL with the
///   snapshot version it applied; a 404 (the control plane forgot it) registers again.
/// - **watch**: long-polls its service's snapshot and swaps in a new route table for every
///   version; a snapshot it cannot decode or `SnapshotCheck` refuses is refused whole, counted
///   (`sidecar_config_rejected_total`) and reported in the heartbeat, and the running table kept
///   (`SnapshotFollowStateMachine` decides).
/// - **renew**: at half-life trades a new key's CSR (over mTLS) for a new certificate and
///   swaps the TLS contexts; open connections keep theirs, new ones use the new certificate.
///   While the control plane is unreachable it retries with backoff (1 s up to 60 s) until
///   the certificate expires; `sidecar_cert_expiry_timestamp_seconds` is there to alert on.
///
/// Each applied snapshot and each renewed certificate is saved to `controlPlane.stateDir`
/// (fail-static: `LastKnownGoodStore`). An unreachable control plane changes nothing in the
/// data plane: the sidecar keeps serving its last snapshot, sets
/// `sidecar_control_plane_connected` to 0 and retries with backoff.
/// On graceful shutdown it deregisters first, so callers stop picking it while it drains.
actor ControlPlaneAgent: Service {
    private var session: ControlPlaneSession
    private let configuration: SidecarConfiguration
    /// Where snapshots and renewed certificates go: the same path as static mode's reload.
    private let applier: ConfigApplier
    /// The port the inbound bound; nil until it has.
    private let inboundPort: @Sendable () -> Int?
    private let metrics: SidecarMetrics
    private let logger: Logger
    /// mTLS with the current certificate; replaced on renewal.
    private var api: SidecarAPIClient
    /// The registered instance's name; nil until registered (and again after a 404).
    private var instanceName: String?
    private var random = SystemRandomNumberGenerator()

    init(
        session: ControlPlaneSession, configuration: SidecarConfiguration, applier: ConfigApplier,
        inboundPort: @escaping @Sendable () -> Int?, metrics: SidecarMetrics, logger: Logger
    ) throws {
        self.session = session
        self.configuration = configuration
        self.applier = applier
        self.inboundPort = inboundPort
        self.metrics = metrics
        self.logger = logger
        api = try SidecarAPIClient(
            credentials: session.credentials, service: configuration.service,
            certificate: (session.certificate.certificatePEM, session.certificate.keyPEM))
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.registerAndHeartbeat() }
                group.addTask { await self.watch() }
                group.addTask { await self.renew() }
            }
        }
        await deregister()
    }

    // MARK: Register and heartbeat

    private func registerAndHeartbeat() async {
        var backoff = ReconnectBackoff()
        var interval = Duration.seconds(5)
        while !Task.isCancelled {
            do {
                if let name = instanceName {
                    try await api.heartbeat(
                        name: name, appliedVersion: session.follow.appliedVersion, rejection: session.follow.rejection,
                        certificateExpiresAt: session.certificate.expiresAt)
                } else {
                    let registered = try await api.register(await registration())
                    instanceName = registered.name
                    interval = .milliseconds(Int64(max(0.3, registered.ttlSeconds / 3) * 1000))
                    logger.info("registered with the control plane", metadata: ["instance": "\(registered.name)"])
                }
                connected(true)
                backoff.reset()
                try? await Task.sleep(for: interval)
            } catch where error.kind == .notRegistered {
                logger.warning("the control plane no longer knows this instance; registering again")
                instanceName = nil
            } catch {
                connected(false)
                let wait = backoff.next(using: &random)
                logger.warning("heartbeat failed", metadata: ["error": "\(error)", "retryIn": "\(wait)"])
                try? await Task.sleep(for: wait)
            }
        }
    }

    /// This instance as other sidecars dial it: `advertise`, else the inbound's listen host
    /// with the port it actually bound.
    private func registration() async -> APIMessages.RegisterRequest {
        let controlPlane = configuration.controlPlane
        var host = configuration.inbound.listen.host
        var port = configuration.inbound.listen.port
        if let advertise = controlPlane?.advertise {
            (host, port) = (advertise.host, advertise.port)
        } else {
            while inboundPort() == nil, !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20))
            }
            port = inboundPort() ?? port
        }
        return APIMessages.RegisterRequest(
            service: configuration.service, address: host, port: port,
            labels: controlPlane?.labels, dependencies: controlPlane?.dependencies)
    }

    private func deregister() async {
        guard let name = instanceName else { return }
        do {
            try await api.deregister(name: name)
            logger.info("deregistered from the control plane", metadata: ["instance": "\(name)"])
        } catch {
            logger.warning("could not deregister; the control plane will expire this instance", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Watch

    private func watch() async {
        var backoff = ReconnectBackoff()
        while !Task.isCancelled {
            let (known, rejected) = session.follow.watchVersions
            do {
                if let snapshot = try await api.snapshot(knownVersion: known, instance: instanceName, rejectedVersion: rejected) {
                    received(snapshot)
                }
                connected(true)
                backoff.reset()
            } catch let error where error.rejection != nil {
                // An answer that does not decode: the control plane is there, the snapshot is not usable.
                connected(true)
                refused(error.rejection!)
            } catch {
                if Task.isCancelled { return }
                connected(false)
                let wait = backoff.next(using: &random)
                logger.warning("watch failed; serving the last configuration", metadata: [
                    "error": "\(error)", "version": "\(session.follow.appliedVersion)", "retryIn": "\(wait)",
                ])
                try? await Task.sleep(for: wait)
            }
        }
    }

    private func received(_ snapshot: MeshSnapshot) {
        guard case .apply(let snapshot) = session.follow.received(snapshot) else { return }
        do {
            try applier.apply(snapshot: snapshot.resources, version: snapshot.version)
        } catch {
            refused(error)
            return
        }
        session.follow.applied(version: snapshot.version)
        session.snapshot = snapshot
        session.save(configuration, logger: logger)
        logger.info("configuration applied", metadata: [
            "version": "\(snapshot.version)", "resources": "\(configuration.resources.count + snapshot.resources.count)",
        ])
    }

    private func refused(_ rejection: SnapshotRejection) {
        guard case .countAndLog = session.follow.refused(rejection) else { return }
        metrics.configurationRejected.increment()
        logger.error("configuration refused; serving the running one", metadata: [
            "version": "\(rejection.version)", "reason": "\(rejection.reason)",
            "running": "\(session.follow.appliedVersion)",
        ])
    }

    // MARK: Renew

    private func renew() async {
        var backoff = ReconnectBackoff(base: .seconds(1), cap: .seconds(60))
        while !Task.isCancelled {
            do {
                try await Task.sleep(until: session.certificate.renewAt)
            } catch {
                return
            }
            do {
                // An expired certificate no longer authenticates us to the control plane: ask
                // with the join token then, as at the start (it may still be valid).
                let expired = session.certificate.expiresAt <= Int64(Date().timeIntervalSince1970)
                let caller = expired ? try SidecarAPIClient(credentials: session.credentials, service: configuration.service) : api
                let certificate = try await ControlPlaneSession.issueCertificate(configuration, api: caller)
                let renewedAPI = try SidecarAPIClient(
                    credentials: session.credentials, service: configuration.service,
                    certificate: (certificate.certificatePEM, certificate.keyPEM))
                try applier.apply(identity: certificate.identity)
                api = renewedAPI
                session.certificate = certificate
                backoff.reset()
                logger.info("certificate renewed", metadata: ["expiresAt": "\(certificate.expiresAt)"])
                session.save(configuration, logger: logger)
            } catch {
                if Task.isCancelled { return }
                let wait = backoff.next(using: &random)
                logger.error("certificate renewal failed", metadata: ["error": "\(error)", "retryIn": "\(wait)"])
                session.certificate.renewAt = .now + wait
            }
        }
    }

    private func connected(_ flag: Bool) {
        metrics.controlPlaneConnection.set(flag)
        if flag, session.follow.controlPlaneAnswered() == .goLive {
            applier.markLive()
            logger.info("control plane answered; the configuration is live again", metadata: [
                "version": "\(session.follow.appliedVersion)",
            ])
        }
    }
}
