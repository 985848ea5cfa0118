#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import MeshAPI
import SidecarCore

/// Fail-static for `ControlPlaneSession`: building a start from a snapshot (live or saved),
/// reading the saved state (refused with a logged reason unless it is this service's, intact
/// and its certificate valid), and saving the state after each change.
extension ControlPlaneSession {
    /// The start from `snapshot`, or from the bootstrap's resources alone when this sidecar
    /// cannot apply it (refused, counted and reported by the agent's first heartbeat).
    static func started(
        _ configuration: SidecarConfiguration, credentials: Credentials, certificate: Certificate, snapshot: MeshSnapshot,
        rejection unreadable: SnapshotRejection? = nil, source: ConfigSource, store: LastKnownGoodStore,
        metrics: SidecarMetrics, logger: Logger
    ) throws -> Sidecar.ControlPlaneStart {
        let contexts = try TLSContextSet.Contexts(configuration, identity: certificate.identity)
        var follow = SnapshotFollowStateMachine(appliedVersion: snapshot.version, source: source)
        var applied = snapshot
        let rejection = unreadable ?? SnapshotCheck.problem(configuration, resources: snapshot.resources).map {
            SnapshotRejection(version: snapshot.version, reason: $0)
        }
        if let rejection {
            follow = SnapshotFollowStateMachine(appliedVersion: 0, source: source)
            _ = follow.refused(rejection)
            metrics.configurationRejected.increment()
            logger.error("configuration refused; starting from the bootstrap file's resources", metadata: [
                "version": "\(rejection.version)", "reason": "\(rejection.reason)",
            ])
            applied = MeshSnapshot(service: configuration.service, version: 0, resources: [])
        }
        let session = ControlPlaneSession(
            credentials: credentials, certificate: certificate, snapshot: applied, follow: follow, store: store)
        // A refused first snapshot must not overwrite the last good state on disk.
        if source == .live, rejection == nil { session.save(configuration, logger: logger) }
        return Sidecar.ControlPlaneStart(
            contexts: contexts, resources: applied.resources, version: applied.version, source: source
        ) { applier, inboundPort in
            try ControlPlaneAgent(
                session: session, configuration: configuration, applier: applier, inboundPort: inboundPort,
                metrics: metrics, logger: logger)
        }
    }

    /// The saved state, when there is one this sidecar may serve from; a refused file is
    /// logged with its reason (and the sidecar waits for the control plane as without one).
    static func lastKnownGood(
        _ configuration: SidecarConfiguration, store: LastKnownGoodStore, logger: Logger, now: Date = Date()
    ) -> (state: LastKnownGoodState, certificate: Certificate)? {
        let bytes: [UInt8]
        do {
            guard let read = try store.load() else { return nil }
            bytes = read
        } catch {
            logger.error("cannot read the saved state; waiting for the control plane", metadata: ["error": "\(error)"])
            return nil
        }
        let unixNow = Int64(now.timeIntervalSince1970)
        do {
            let state = try LastKnownGoodState.decode(
                bytes, service: configuration.service, trustDomain: configuration.trustDomain, now: unixNow)
            let certificate = Certificate(
                certificatePEM: state.certificatePEM, keyPEM: state.keyPEM, bundlePEM: state.bundlePEM,
                expiresAt: state.expiresAt, renewAt: .now + .seconds(max(1, (state.expiresAt - unixNow) / 2)))
            // The certificate must be this service's, in this trust domain, with its key.
            _ = try TLSContextSet.Contexts(configuration, identity: certificate.identity)
            return (state, certificate)
        } catch {
            logger.error("refusing the saved state; waiting for the control plane", metadata: [
                "stateFile": "\(store.path)", "reason": "\(error)",
            ])
            return nil
        }
    }

    /// Writes the applied snapshot and the certificate in use to the state directory; a
    /// failure is logged (the sidecar runs on, only a restart without control plane suffers).
    func save(_ configuration: SidecarConfiguration, logger: Logger) {
        let state = LastKnownGoodState(
            service: configuration.service, trustDomain: configuration.trustDomain, snapshot: snapshot,
            certificatePEM: certificate.certificatePEM, keyPEM: certificate.keyPEM, bundlePEM: certificate.bundlePEM,
            expiresAt: certificate.expiresAt)
        do {
            try store.save(state)
        } catch {
            logger.error("cannot save the last-known-good state", metadata: ["error": "\(error)"])
        }
    }
}
