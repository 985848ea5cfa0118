import Foundation
import MeshCertificates
import SidecarCore

/// The mesh CA: a root key and certificate kept in the data dir, which signs 24 h workload
/// leaves from sidecars' CSRs and the control plane's own server certificate.
///
/// Root rotation: `ca.pem` (the trust bundle every sidecar receives) may hold the old and the
/// new root; the one whose key is `ca.key` signs. Sidecars trust both until the old one is
/// removed from the bundle, after every leaf it signed has been renewed.
///
/// A caller proven to be service S (join token or client certificate) may only obtain
/// `spiffe://<trust-domain>/service/S`; the admin may obtain any service identity. Immutable
/// after loading, so safe to share.
public struct CertificateAuthority: Sendable {
    public let trustDomain: String
    /// The trust bundle: every root sidecars accept (one, or two while rotating).
    public let rootPEM: String
    let rootKeyPEM: String
    /// The root in the bundle that `rootKeyPEM` belongs to.
    let signingRootPEM: String
    /// How long a leaf stays valid from the moment it is issued.
    public let leafLifetime: TimeInterval
    /// How far back a leaf's notBefore is set, for peers whose clocks run a little behind. It
    /// comes on top of `leafLifetime`: a 20 s lifetime gives 20 s of use, not an expired leaf.
    public static let clockSkewAllowance: TimeInterval = 60

    public init(rootPEM: String, rootKeyPEM: String, trustDomain: String, leafLifetime: TimeInterval = 86_400) {
        self.rootPEM = rootPEM
        self.rootKeyPEM = rootKeyPEM
        self.signingRootPEM = CertificateMinting.certificate(in: rootPEM, matching: rootKeyPEM) ?? rootPEM
        self.trustDomain = trustDomain
        self.leafLifetime = leafLifetime
    }

    /// The same CA issuing leaves valid for `lifetime` seconds.
    public func withLeafLifetime(_ lifetime: TimeInterval) -> CertificateAuthority {
        CertificateAuthority(rootPEM: rootPEM, rootKeyPEM: rootKeyPEM, trustDomain: trustDomain, leafLifetime: lifetime)
    }

    /// A fresh root (10 years) for a new data dir.
    public static func create(trustDomain: String) throws -> CertificateAuthority {
        let key = CertificateMinting.makePrivateKeyPEM()
        let root = try CertificateMinting.makeRoot(commonName: "mesh CA \(trustDomain)", keyPEM: key)
        return CertificateAuthority(rootPEM: root, rootKeyPEM: key, trustDomain: trustDomain)
    }

    /// The identity the control plane's own server certificate carries.
    public var controlPlaneIdentity: SPIFFEID {
        SPIFFEID.controlPlane(trustDomain: trustDomain)!
    }

    /// Who is asking for a certificate.
    public enum Requester: Sendable, Equatable {
        case admin
        case service(String)
    }

    public struct IssuedCertificate: Sendable {
        public var certificatePEM: String
        public var identity: SPIFFEID
        public var expiresAt: Date
    }

    /// Signs a workload leaf for `csrPEM`, refusing an identity the requester may not hold. The
    /// leaf carries one SAN, `spiffe://<trust-domain>/service/<name>`; DNS names and IP
    /// addresses in the CSR are dropped (a workload must not be able to pass a hostname check
    /// as another server, the control plane included).
    public func issue(csrPEM: String, for requester: Requester) throws(CertificateAuthorityError) -> IssuedCertificate {
        let request: CertificateMinting.CSRRequest
        do {
            request = try CertificateMinting.inspectCSR(csrPEM)
        } catch {
            throw .invalidRequest(error.description)
        }
        guard request.identities.count == 1, let identity = request.identities.first else {
            throw .invalidRequest("a CSR must ask for exactly one SPIFFE ID, found \(request.identities.count)")
        }
        guard identity.trustDomain == trustDomain, identity.serviceName != nil else {
            throw .forbidden("the CSR asks for \(identity), outside spiffe://\(trustDomain)/service/<name>")
        }
        if case .service(let allowed) = requester {
            // The whole ID, compared as a value: exactly the token's service in our trust domain.
            let expected = SPIFFEID.service(allowed, trustDomain: trustDomain)
            guard identity == expected else {
                throw .forbidden(MintingError.identityNotAllowed(
                    requested: identity.description, allowed: expected?.description ?? allowed).description)
            }
        }
        let now = Date()
        do {
            let leaf = try CertificateMinting.signLeaf(
                request: request, issuerCertificatePEM: signingRootPEM, issuerKeyPEM: rootKeyPEM,
                notBefore: now.addingTimeInterval(-Self.clockSkewAllowance), lifetime: Self.clockSkewAllowance + leafLifetime)
            return IssuedCertificate(certificatePEM: leaf, identity: identity, expiresAt: now.addingTimeInterval(leafLifetime))
        } catch {
            throw .invalidRequest("\(error)")
        }
    }

    /// A key and certificate for the API server, made at each start (never written to disk):
    /// SANs `localhost`, loopback IPs and `listenHost` when it is an IP, so curl and Prometheus
    /// can verify it too.
    public func makeServerCredentials(listenHost: String? = nil) throws -> (certificatePEM: String, keyPEM: String) {
        let key = CertificateMinting.makePrivateKeyPEM()
        var addresses = ["127.0.0.1", "::1"]
        if let listenHost, !addresses.contains(listenHost), listenHost.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }),
            listenHost != "0.0.0.0", listenHost != "::"
        {
            addresses.append(listenHost)
        }
        let certificate = try CertificateMinting.signServerLeaf(
            identity: controlPlaneIdentity, keyPEM: key, dnsNames: ["localhost"], ipAddresses: addresses,
            issuerCertificatePEM: signingRootPEM, issuerKeyPEM: rootKeyPEM)
        return (certificate, key)
    }
}

public enum CertificateAuthorityError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Unreadable CSR (400).
    case invalidRequest(String)
    /// An identity the requester may not hold (403).
    case forbidden(String)

    public var description: String {
        switch self {
        case .invalidRequest(let message), .forbidden(let message): message
        }
    }
}
