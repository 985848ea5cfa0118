#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The immutable description of one side of a TLS session: what we present, whom we trust,
/// which versions and ALPN protocols we speak and which peer identities we accept.
///
/// Pure data: building it touches no file and no OpenSSL. `TLSContext` turns it into an
/// `SSL_CTX` once (off the event loop), and every connection shares that context.
public struct TLSConfiguration: Sendable {
    public enum ProtocolVersion: Sendable, Comparable {
        case tls12
        case tls13
    }

    public enum CertificateVerification: Sendable {
        /// Verify the peer's chain against `trustRoots` and require it to present one.
        case fullVerification
        /// Verify a chain if the peer sends one, but accept peers that send none (servers only).
        case optional
        /// Do not ask for or verify a peer certificate.
        case none
    }

    /// The leaf certificate first, then intermediates (PEM).
    public var certificateChain: PEMSource?
    /// The private key of the leaf (PEM: PKCS#8, SEC1 EC or RSA).
    public var privateKey: PEMSource?
    /// One or more trusted roots (PEM); several roots let a bundle overlap during rotation.
    public var trustRoots: PEMSource?
    public var minimumVersion: ProtocolVersion
    public var maximumVersion: ProtocolVersion
    /// In preference order. Clients offer them; servers pick the first the client also offers
    /// and proceed without ALPN when there is no overlap or the client offers none.
    public var alpnProtocols: [String]
    public var certificateVerification: CertificateVerification
    /// Which verified identities to accept; a connection may narrow it (the outbound knows
    /// the destination service).
    public var peerIdentity: PeerIdentityPolicy
    public var handshakeTimeout: TimeAmount
    /// Who protects TLS 1.3 application data (AES-GCM suites) after the handshake.
    public var recordLayer: RecordLayer = .processDefault
    /// Records sealed under one write key before a KeyUpdate moves it on (the mesh record layer;
    /// 2^24, well inside AES-GCM's 2^24.5, RFC 8446 §5.5). Tests lower it.
    var recordsPerKey: UInt64 = 1 << 24

    /// Who protects a TLS 1.3 connection's application data once OpenSSL's handshake is done.
    public enum RecordLayer: Sendable {
        /// The mesh's own (`TLS13RecordLayer`): AES-GCM through one EVP context keyed once
        /// per direction, about half of OpenSSL 3.0's instructions per record. TLS 1.2 and
        /// ChaCha20 stay with OpenSSL.
        case mesh
        /// OpenSSL's `SSL_write` / `SSL_read` throughout.
        case openSSL

        /// `.openSSL` when the environment has `MESH_TLS_RECORD_LAYER=openssl`, else `.mesh`.
        public static let processDefault: RecordLayer =
            getenv("MESH_TLS_RECORD_LAYER").map { String(cString: $0) } == "openssl" ? .openSSL : .mesh
    }

    /// The mesh's sidecar-to-sidecar profile: TLS 1.3 only, mutual authentication, ALPN
    /// `http/1.1`, peers limited to the trust domain's workloads (`spiffe://<td>/service/<name>`:
    /// a certificate for any other ID from the same CA, such as the control plane's, is refused),
    /// 10 s handshake timeout.
    public static func mesh(
        certificateChain: PEMSource,
        privateKey: PEMSource,
        trustRoots: PEMSource,
        trustDomain: String = SPIFFEID.defaultTrustDomain
    ) -> TLSConfiguration {
        TLSConfiguration(
            certificateChain: certificateChain,
            privateKey: privateKey,
            trustRoots: trustRoots,
            minimumVersion: .tls13,
            maximumVersion: .tls13,
            alpnProtocols: ["http/1.1"],
            certificateVerification: .fullVerification,
            peerIdentity: .service(inTrustDomain: trustDomain),
            handshakeTimeout: .seconds(10)
        )
    }

    public init(
        certificateChain: PEMSource? = nil,
        privateKey: PEMSource? = nil,
        trustRoots: PEMSource? = nil,
        minimumVersion: ProtocolVersion = .tls13,
        maximumVersion: ProtocolVersion = .tls13,
        alpnProtocols: [String] = ["http/1.1"],
        certificateVerification: CertificateVerification = .fullVerification,
        peerIdentity: PeerIdentityPolicy = .any,
        handshakeTimeout: TimeAmount = .seconds(10)
    ) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustRoots = trustRoots
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.alpnProtocols = alpnProtocols
        self.certificateVerification = certificateVerification
        self.peerIdentity = peerIdentity
        self.handshakeTimeout = handshakeTimeout
    }
}

/// Where PEM text comes from: a file (named in errors) or bytes already in memory.
public enum PEMSource: Sendable, Equatable {
    case file(String)
    case pem(String, name: String = "inline PEM")

    /// How errors name this source.
    public var displayName: String {
        switch self {
        case .file(let path): return path
        case .pem(_, let name): return name
        }
    }

    func load() throws(TLSConfigurationError) -> [UInt8] {
        switch self {
        case .pem(let text, _):
            return Array(text.utf8)
        case .file(let path):
            return try readWholeFile(path)
        }
    }
}

/// Which peer identities a session accepts, checked against the SPIFFE URI SAN of the verified
/// leaf during the handshake, so a refused peer gets an alert rather than a session.
public enum PeerIdentityPolicy: Sendable {
    /// Any peer whose chain verifies.
    case any
    /// A SPIFFE ID in this trust domain.
    case trustDomain(String)
    /// A mesh workload of this trust domain: `spiffe://<domain>/service/<name>`, nothing else
    /// (not `/control-plane`, not `/admin`, not `/service/a/b`).
    case service(inTrustDomain: String)
    /// Exactly one of these SPIFFE IDs.
    case exactly(Set<SPIFFEID>)
    /// A custom decision; nil when the leaf carries no SPIFFE ID.
    case predicate(@Sendable (SPIFFEID?) -> Bool)

    /// nil when accepted, else why not.
    func evaluate(_ identity: SPIFFEID?) -> TLSFailureReason? {
        switch self {
        case .any:
            return nil
        case .trustDomain(let domain):
            guard let identity else { return .identityMismatch }
            return identity.trustDomain == domain ? nil : .foreignTrustDomain
        case .service(let domain):
            guard let identity else { return .identityMismatch }
            guard identity.trustDomain == domain else { return .foreignTrustDomain }
            return identity.serviceName == nil ? .identityMismatch : nil
        case .exactly(let allowed):
            guard let identity else { return .identityMismatch }
            if allowed.contains(identity) { return nil }
            return allowed.contains(where: { $0.trustDomain == identity.trustDomain })
                ? .identityMismatch : .foreignTrustDomain
        case .predicate(let accepts):
            return accepts(identity) ? nil : .identityMismatch
        }
    }

    /// What this policy accepts, for the error a refused peer produces.
    var expectation: String {
        switch self {
        case .any: return "any identity"
        case .trustDomain(let domain): return "a SPIFFE ID in trust domain \(domain)"
        case .service(let domain): return "spiffe://\(domain)/service/<name>"
        case .exactly(let allowed): return allowed.map(\.description).sorted().joined(separator: " or ")
        case .predicate: return "an identity this connection accepts"
        }
    }
}
