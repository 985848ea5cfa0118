import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SidecarCore
import SwiftASN1
import X509

/// Mints the mesh's X.509 material with swift-certificates: P-256 keys, self-signed roots,
/// CSRs carrying a SPIFFE URI SAN, and leaves signed from a CSR. Used by the control plane's CA
/// and by tests to mint certificates at test time. Everything is PEM in, PEM out.
///
/// The private key of a workload is made where it is used (the sidecar) and only its CSR travels.
public enum CertificateMinting {
    /// A fresh P-256 private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    public static func makePrivateKeyPEM() -> String {
        P256.Signing.PrivateKey().pemRepresentation
    }

    /// A self-signed CA certificate for `trustDomain`, valid from `notBefore` for `lifetime` seconds.
    public static func makeRoot(
        commonName: String,
        keyPEM: String,
        notBefore: Date = Date().addingTimeInterval(-300),
        lifetime: TimeInterval = 10 * 365 * 86_400
    ) throws -> String {
        let key = Certificate.PrivateKey(try P256.Signing.PrivateKey(pemRepresentation: keyPEM))
        let name = try DistinguishedName { CommonName(commonName); OrganizationName("mesh") }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: notBefore,
            notValidAfter: notBefore.addingTimeInterval(lifetime),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: key
        )
        return try certificate.serializeAsPEM().pemString
    }

    /// The certificate in a PEM bundle whose public key is `keyPEM`'s: the signing root when a
    /// CA's bundle holds an old and a new root during rotation. Nil when none matches.
    public static func certificate(in bundlePEM: String, matching keyPEM: String) -> String? {
        guard let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM),
            let documents = try? PEMDocument.parseMultiple(pemString: bundlePEM)
        else { return nil }
        let publicKey = Certificate.PublicKey(key.publicKey)
        for document in documents where document.discriminator == "CERTIFICATE" {
            if let certificate = try? Certificate(derEncoded: document.derBytes), certificate.publicKey == publicKey {
                return document.pemString
            }
        }
        return nil
    }

    /// A CSR for `identity`, signed by the key it asks a certificate for. `dnsNames` and
    /// `ipAddresses` only serve tests that check the CA drops them.
    public static func makeCSR(
        identity: SPIFFEID, keyPEM: String, dnsNames: [String] = [], ipAddresses: [String] = []
    ) throws -> String {
        let key = Certificate.PrivateKey(try P256.Signing.PrivateKey(pemRepresentation: keyPEM))
        let subject = try DistinguishedName { CommonName(identity.serviceName ?? identity.description) }
        let names = try subjectAlternativeNames(identity: identity, dnsNames: dnsNames, ipAddresses: ipAddresses)
        let request = ExtensionRequest(extensions: try Certificate.Extensions { SubjectAlternativeNames(names) })
        let attributes = CertificateSigningRequest.Attributes([try .init(request)])
        let csr = try CertificateSigningRequest(
            version: .v1, subject: subject, privateKey: key, attributes: attributes,
            signatureAlgorithm: .ecdsaWithSHA256)
        return try csr.serializeAsPEM().pemString
    }

    /// What a CSR asks for, after its signature was checked.
    public struct CSRRequest: Sendable {
        public let identities: [SPIFFEID]
        /// DNS and IP SANs the CSR also asks for; a signed leaf never carries them.
        public let dnsNames: [String]
        public let ipAddressCount: Int
        public let publicKey: Certificate.PublicKey
    }

    /// Parses a CSR PEM and checks its self-signature; returns the SPIFFE IDs, DNS names and
    /// IP addresses it asks for. Any other kind of SAN, or a URI that is not a SPIFFE ID, is refused.
    public static func inspectCSR(_ csrPEM: String) throws(MintingError) -> CSRRequest {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(pemEncoded: csrPEM)
        } catch {
            throw MintingError.invalidCSR("not a PEM certificate signing request (\(error))")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw MintingError.invalidCSR("the CSR's signature does not match its public key")
        }
        var identities: [SPIFFEID] = []
        var dnsNames: [String] = []
        var ipAddressCount = 0
        do {
            if let request = try csr.attributes.extensionRequest,
                let sans = try request.extensions.subjectAlternativeNames
            {
                for name in sans {
                    switch name {
                    case .uniformResourceIdentifier(let uri):
                        guard let id = SPIFFEID(uri) else {
                            throw MintingError.invalidCSR("URI SAN \"\(uri)\" is not a SPIFFE ID")
                        }
                        identities.append(id)
                    case .dnsName(let dns): dnsNames.append(dns)
                    case .ipAddress: ipAddressCount += 1
                    default: throw MintingError.invalidCSR("unsupported subject alternative name \(name)")
                    }
                }
            }
        } catch let error as MintingError {
            throw error
        } catch {
            throw MintingError.invalidCSR("unreadable extension request (\(error))")
        }
        return CSRRequest(
            identities: identities, dnsNames: dnsNames, ipAddressCount: ipAddressCount, publicKey: csr.publicKey)
    }

    /// Signs a workload leaf for a CSR with the issuer's cert and key. The leaf's only SAN is the
    /// CSR's SPIFFE ID (exactly one required): DNS names and IP addresses the CSR asks for are
    /// dropped, so a workload certificate can never pass a hostname check for another server.
    /// Valid for client and server auth.
    public static func signLeaf(
        csrPEM: String,
        issuerCertificatePEM: String,
        issuerKeyPEM: String,
        notBefore: Date = Date().addingTimeInterval(-60),
        lifetime: TimeInterval = 86_400
    ) throws -> String {
        try signLeaf(
            request: try inspectCSR(csrPEM), issuerCertificatePEM: issuerCertificatePEM, issuerKeyPEM: issuerKeyPEM,
            notBefore: notBefore, lifetime: lifetime)
    }

    /// `signLeaf(csrPEM:…)` for a CSR already inspected (and its identity already checked).
    public static func signLeaf(
        request: CSRRequest,
        issuerCertificatePEM: String,
        issuerKeyPEM: String,
        notBefore: Date = Date().addingTimeInterval(-60),
        lifetime: TimeInterval = 86_400
    ) throws -> String {
        guard request.identities.count == 1, let identity = request.identities.first else {
            throw MintingError.invalidCSR("a CSR must ask for exactly one SPIFFE ID, found \(request.identities.count)")
        }
        return try issueLeaf(
            publicKey: request.publicKey, identity: identity, names: [.uniformResourceIdentifier(identity.description)],
            criticalNames: true, issuerCertificatePEM: issuerCertificatePEM, issuerKeyPEM: issuerKeyPEM,
            notBefore: notBefore, lifetime: lifetime)
    }

    /// Signs a client-and-server leaf for `identity` carrying `names` as its SANs: the one place
    /// leaves are made (from a CSR, or for the control plane's own server certificate).
    static func issueLeaf(
        publicKey: Certificate.PublicKey, identity: SPIFFEID, names: [GeneralName], criticalNames: Bool,
        issuerCertificatePEM: String, issuerKeyPEM: String, notBefore: Date, lifetime: TimeInterval
    ) throws -> String {
        let issuer = try Certificate(pemEncoded: issuerCertificatePEM)
        let issuerKey = Certificate.PrivateKey(try P256.Signing.PrivateKey(pemRepresentation: issuerKeyPEM))
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            if criticalNames { Critical(SubjectAlternativeNames(names)) } else { SubjectAlternativeNames(names) }
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: try issuer.extensions.subjectKeyIdentifier?.keyIdentifier)
        }
        let leaf = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: notBefore.addingTimeInterval(lifetime),
            issuer: issuer.subject,
            subject: try DistinguishedName { CommonName(identity.serviceName ?? identity.description) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: issuerKey
        )
        return try leaf.serializeAsPEM().pemString
    }

    /// The `notValidAfter` of the first certificate in a PEM chain.
    public static func expiry(ofCertificatePEM pem: String) throws -> Date {
        try Certificate(pemEncoded: pem).notValidAfter
    }
}

/// Why minting refused a request: a message a user can act on.
public enum MintingError: Error, CustomStringConvertible, Equatable {
    case invalidCSR(String)
    case identityNotAllowed(requested: String, allowed: String)

    public var description: String {
        switch self {
        case .invalidCSR(let why): return "invalid CSR: \(why)"
        case .identityNotAllowed(let requested, let allowed):
            return "the CSR asks for \(requested) but this caller may only obtain \(allowed)"
        }
    }
}
