import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import SidecarCore
import SwiftASN1
import X509

/// Server certificates with IP-address SANs, for endpoints that generic HTTPS clients (curl,
/// Prometheus) reach by IP, such as the control plane's API. Workload CSRs never carry IPs.
extension CertificateMinting {
    /// A leaf for `keyPEM`'s public key carrying `identity`, `dnsNames` and `ipAddresses`
    /// (IPv4 dotted or IPv6 literals; others are refused), signed by the issuer.
    public static func signServerLeaf(
        identity: SPIFFEID,
        keyPEM: String,
        dnsNames: [String],
        ipAddresses: [String],
        issuerCertificatePEM: String,
        issuerKeyPEM: String,
        notBefore: Date = Date().addingTimeInterval(-60),
        lifetime: TimeInterval = 365 * 86_400
    ) throws -> String {
        let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        let names = try subjectAlternativeNames(identity: identity, dnsNames: dnsNames, ipAddresses: ipAddresses)
        return try issueLeaf(
            publicKey: Certificate.PublicKey(key.publicKey), identity: identity, names: names, criticalNames: false,
            issuerCertificatePEM: issuerCertificatePEM, issuerKeyPEM: issuerKeyPEM, notBefore: notBefore,
            lifetime: lifetime)
    }

    /// `identity` as a URI SAN, then `dnsNames` and `ipAddresses` (IPv4 dotted or IPv6
    /// literals; others are refused).
    static func subjectAlternativeNames(
        identity: SPIFFEID, dnsNames: [String], ipAddresses: [String]
    ) throws -> [GeneralName] {
        var names: [GeneralName] = [.uniformResourceIdentifier(identity.description)]
        names += dnsNames.map { GeneralName.dnsName($0) }
        for address in ipAddresses {
            guard let bytes = ipAddressBytes(address) else {
                throw MintingError.invalidCSR("\"\(address)\" is not an IP address")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        return names
    }

    /// 4 or 16 network-order bytes, or nil.
    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
