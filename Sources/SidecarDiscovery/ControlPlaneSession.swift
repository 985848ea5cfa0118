#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import MeshAPI
import NIOCore
import NIOPosix
import SidecarCore

/// Dynamic mode's start: with the join token, trade a CSR for this service's certificate
/// (the key is made here and never sent), then fetch the first snapshot over mTLS, and build
/// the TLS contexts the listeners open with. Waits out an unreachable control plane (logging
/// each attempt); a refused token or an invalid answer ends the start with the control
/// plane's own words.
///
/// The session (credentials, certificate, applied version) is then handed to
/// `ControlPlaneAgent`, which keeps it current.
public struct ControlPlaneSession: Sendable {
    /// The files behind `controlPlane:`, read and checked once.
    public struct Credentials: Sendable {
        /// The control-plane replicas (one, or several to fail over between).
        public var addresses: [String]
        /// Which replica the sidecar talks to now: shared by every client made from these
        /// credentials, so a move to the next replica holds for all its calls.
        let replica = ReplicaCursor()
        public var address: String { addresses[replica.index(of: addresses.count)] }
        public var token: String
        public var caPEM: String
        /// The server must present `spiffe://<trustDomain>/control-plane`.
        public var trustDomain: String
        /// Where the API clients' connections run: the sidecar's own event loops.
        public var group: any EventLoopGroup

        public init(
            _ controlPlane: SidecarConfiguration.ControlPlane, trustDomain: String = MeshDefaults.trustDomain,
            group: any EventLoopGroup
        ) throws {
            addresses = controlPlane.addresses
            self.trustDomain = trustDomain
            self.group = group
            token = try Self.read(controlPlane.tokenFile, what: "join token")
                .trimmingWhitespace()
            guard !token.isEmpty, !token.contains(where: \.isWhitespace) else {
                throw Sidecar.StartupError(description: "\(controlPlane.tokenFile): expected one join token (control-plane token create --service NAME)")
            }
            caPEM = try Self.read(controlPlane.caFile, what: "control plane CA")
            // Line by line: String's contains(String) is _StringProcessing's, whose code a
            // sidecar otherwise never runs (0.2 MiB more resident).
            guard caPEM.split(separator: "\n").contains(where: { $0.hasPrefix("-----BEGIN CERTIFICATE-----") }) else {
                throw Sidecar.StartupError(description: "\(controlPlane.caFile): no PEM certificate in it (control-plane ca bundle)")
            }
            // Refuses a bundle OpenSSL cannot load, before any connection is tried.
            _ = try SidecarAPIClient(credentials: self, service: "")
        }

        private static func read(_ path: String, what: String) throws -> String {
            do {
                return try String.readingFile(path)
            } catch {
                throw Sidecar.StartupError(description: "\(path): cannot read the \(what): \(error.message)")
            }
        }
    }

    /// The workload certificate and key, and when to renew them.
    struct Certificate: Sendable {
        var certificatePEM: String
        var keyPEM: String
        var bundlePEM: String
        /// Unix seconds.
        var expiresAt: Int64
        /// Half-way through the lifetime left when it was issued.
        var renewAt: ContinuousClock.Instant

        var identity: SidecarIdentity {
            SidecarIdentity(
                certificateChain: .pem(certificatePEM, name: "the certificate from the control plane"),
                privateKey: .pem(keyPEM, name: "the sidecar's key"),
                trustBundle: .pem(bundlePEM, name: "the trust bundle from the control plane"))
        }
    }

    let credentials: Credentials
    var certificate: Certificate
    /// The snapshot in use (what a restart without control plane serves).
    var snapshot: MeshSnapshot
    var follow: SnapshotFollowStateMachine
    let store: LastKnownGoodStore

    /// Checks a dynamic-mode configuration offline: the token file holds a token and the CA
    /// file a usable trust bundle. `group` runs the API clients made from the credentials.
    public static func credentials(
        for configuration: SidecarConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws -> Credentials {
        guard let controlPlane = configuration.controlPlane else {
            throw Sidecar.StartupError(description: "no controlPlane in the configuration")
        }
        return try Credentials(controlPlane, trustDomain: configuration.trustDomain, group: group)
    }

    /// Dynamic mode for `Sidecar` (its `ControlPlaneConnector`): the credentials, then `start`.
    public static func connect(
        _ configuration: SidecarConfiguration, metrics: SidecarMetrics, logger: Logger, group: any EventLoopGroup
    ) async throws -> Sidecar.ControlPlaneStart {
        try await start(
            configuration, credentials: try credentials(for: configuration, group: group), metrics: metrics, logger: logger)
    }

    /// The certificate and the first snapshot; the follower it returns is a `ControlPlaneAgent`
    /// that carries on from this session. With a usable state file saved by an earlier run
    /// (`ControlPlaneSession+LastKnownGood`): when the first call finds no control plane, starts
    /// from that state (fail-static); when the join token is refused (spent, expired), asks for
    /// a certificate with the saved one instead.
    static func start(
        _ configuration: SidecarConfiguration, credentials: Credentials, metrics: SidecarMetrics, logger: Logger
    ) async throws -> Sidecar.ControlPlaneStart {
        let store = LastKnownGoodStore(
            directory: configuration.controlPlane?.stateDirectory ?? MeshDefaults.stateDirectory, service: configuration.service)
        let bootstrap = try SidecarAPIClient(credentials: credentials, service: configuration.service)
        let certificate: Certificate
        do {
            certificate = try await issueCertificate(configuration, api: bootstrap)
        } catch let error as ControlPlaneCallError where error.isRetryable {
            if let saved = lastKnownGood(configuration, store: store, logger: logger) {
                logger.warning("control plane unreachable; serving the last-known-good state until it answers", metadata: [
                    "error": "\(error)", "version": "\(saved.state.snapshot.version)", "certificateExpiresAt": "\(saved.state.expiresAt)",
                    "stateFile": "\(store.path)",
                ])
                return try started(
                    configuration, credentials: credentials, certificate: saved.certificate, snapshot: saved.state.snapshot,
                    source: .lastKnownGood, store: store, metrics: metrics, logger: logger)
            }
            certificate = try await retrying("certificate", logger: logger) {
                try await issueCertificate(configuration, api: bootstrap)
            }
        } catch let error as ControlPlaneCallError where error.kind == .refused {
            guard let saved = lastKnownGood(configuration, store: store, logger: logger) else {
                throw startupError(error, asking: "certificate")
            }
            logger.warning("join token refused; asking with the saved certificate", metadata: ["error": "\(error)"])
            let renewing = try SidecarAPIClient(
                credentials: credentials, service: configuration.service,
                certificate: (saved.certificate.certificatePEM, saved.certificate.keyPEM))
            do {
                certificate = try await issueCertificate(configuration, api: renewing)
            } catch let second as ControlPlaneCallError {
                throw startupError(error, asking: "certificate", also: second)
            }
        } catch let error as ControlPlaneCallError {
            throw startupError(error, asking: "certificate")
        }
        let api = try SidecarAPIClient(
            credentials: credentials, service: configuration.service,
            certificate: (certificate.certificatePEM, certificate.keyPEM))
        // A first snapshot this sidecar cannot read is refused like any other: it starts from
        // its bootstrap file's resources and reports the refusal.
        let answer = try await retrying("first snapshot", logger: logger) { () async throws -> Result<MeshSnapshot?, SnapshotRejection> in
            do {
                return .success(try await api.snapshot(knownVersion: nil, instance: nil))
            } catch let error as ControlPlaneCallError where error.rejection != nil {
                return .failure(error.rejection!)
            }
        }
        metrics.controlPlaneConnection.set(true)
        var snapshot = MeshSnapshot(service: configuration.service, version: 0, resources: [])
        var rejection: SnapshotRejection?
        switch answer {
        case .success(let received): snapshot = received ?? snapshot
        case .failure(let refused): rejection = refused
        }
        logger.info("identity and configuration from the control plane", metadata: [
            "address": "\(credentials.address)", "version": "\(snapshot.version)",
            "resources": "\(configuration.resources.count + snapshot.resources.count)",
        ])
        return try started(
            configuration, credentials: credentials, certificate: certificate, snapshot: snapshot, rejection: rejection,
            source: .live, store: store, metrics: metrics, logger: logger)
    }

    /// A fresh key and a CSR for this service's SPIFFE ID, signed by the control plane's CA.
    static func issueCertificate(_ configuration: SidecarConfiguration, api: SidecarAPIClient) async throws -> Certificate {
        guard let identity = SPIFFEID.service(configuration.service, trustDomain: configuration.trustDomain) else {
            throw Sidecar.StartupError(description: "service \"\(configuration.service)\" makes no SPIFFE ID")
        }
        let request = try TLSCertificateRequest.make(identity: identity)
        let issued = try await api.issueCertificate(csrPEM: request.csrPEM)
        let now = Int64(Date().timeIntervalSince1970)
        // The certificate's own notAfter, as the TLS context and its metric read it (the API's
        // `expiresAt` may round differently); the answer's when the PEM does not parse here.
        let expiresAt = (try? TLSCertificate.loadChain(from: .pem(issued.certificate)))?.first?.notAfter ?? issued.expiresAt
        let halfLife = max(1, (expiresAt - now) / 2)
        return Certificate(
            certificatePEM: issued.certificate, keyPEM: request.keyPEM, bundlePEM: issued.bundle, expiresAt: expiresAt,
            renewAt: .now + .seconds(halfLife))
    }

    /// Runs `call` until it succeeds, waiting out an unreachable control plane; any other
    /// failure ends the start.
    private static func retrying<T>(
        _ what: String, logger: Logger, _ call: () async throws -> T
    ) async throws -> T {
        var backoff = ReconnectBackoff()
        var random = SystemRandomNumberGenerator()
        while true {
            do {
                return try await call()
            } catch let error as ControlPlaneCallError where error.isRetryable {
                let wait = backoff.next(using: &random)
                logger.warning("control plane unreachable, retrying", metadata: [
                    "for": "\(what)", "error": "\(error)", "retryIn": "\(wait)",
                ])
                try await Task.sleep(for: wait)
            } catch let error as ControlPlaneCallError {
                throw startupError(error, asking: what)
            }
        }
    }

    /// What ends the start: a wrong server, or the control plane's refusal in its own words.
    private static func startupError(
        _ error: ControlPlaneCallError, asking what: String, also second: ControlPlaneCallError? = nil
    ) -> Sidecar.StartupError {
        if error.kind == .wrongServer {
            return Sidecar.StartupError(description: "cannot ask for the \(what): \(error)")
        }
        let saved = second.map { "; with the saved certificate: \($0)" } ?? ""
        return Sidecar.StartupError(description: "control plane refused the \(what): \(error)\(saved)")
    }
}
