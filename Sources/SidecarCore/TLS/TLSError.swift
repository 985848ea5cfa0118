/// Why a TLS session failed, as a bounded word fit for a metric label
/// (`sidecar_tls_handshake_errors_total{reason}`) and a log line.
public enum TLSFailureReason: String, Sendable, CaseIterable {
    /// The peer sent no certificate where one is required (or told us we must send one).
    case peerNoCertificate = "peer-no-certificate"
    /// The peer's chain does not lead to one of our trusted roots (or the peer said so of ours).
    case untrustedIssuer = "untrusted-issuer"
    case expired = "expired"
    case notYetValid = "not-yet-valid"
    /// The verified leaf's SPIFFE ID is not one this connection accepts.
    case identityMismatch = "identity-mismatch"
    /// The verified leaf's SPIFFE ID belongs to another trust domain.
    case foreignTrustDomain = "foreign-trust-domain"
    /// No TLS version both sides allow.
    case protocolVersion = "protocol-version"
    /// The bytes were not TLS at all (plain HTTP, garbage).
    case notTLS = "not-tls"
    case handshakeTimeout = "handshake-timeout"
    /// The peer refused our certificate for another reason (bad certificate alert).
    case peerRejected = "peer-rejected"
    case invalidCertificate = "invalid-certificate"
    /// The transport closed before the handshake finished.
    case closedDuringHandshake = "closed-during-handshake"
    case other = "other"
}

/// A TLS session error: the reason word plus OpenSSL's own detail (drained from its error queue
/// at the failing call), so logs can say exactly what happened.
public struct TLSError: Error, Sendable, CustomStringConvertible, Equatable {
    public let reason: TLSFailureReason
    public let detail: String
    /// For an identity refusal (`identity-mismatch`, `foreign-trust-domain`): the SPIFFE ID the
    /// peer's verified certificate carries, nil when it carries none.
    public let presentedIdentity: SPIFFEID?

    public init(_ reason: TLSFailureReason, _ detail: String, presentedIdentity: SPIFFEID? = nil) {
        self.reason = reason
        self.detail = detail
        self.presentedIdentity = presentedIdentity
    }

    public var description: String { "tls: \(reason.rawValue): \(detail)" }
}

/// A TLS configuration that cannot be turned into a context: names the file and what is wrong.
public struct TLSConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    public let file: String?
    public let message: String

    public init(file: String?, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String {
        if let file { return "\(file): \(message)" }
        return message
    }
}
