import ControlPlane
import Crypto
import Foundation
import MeshCertificates
import SidecarCore
import SwiftASN1
import X509

/// The CA handling `POST /v1/certificates`: `CertificateAuthority.issue(csrPEM:for:)`.
///
/// The first byte picks how the rest becomes a CSR: PEM text as sent (mode 0), DER bytes
/// wrapped in PEM (mode 1), or a CSR built and validly signed here from fuzzed lines (mode 2:
/// the first line is the requester, `*` for the admin or a service name; then one SAN per line,
/// `u` URI, `d` DNS name, `i` IP address bytes, `e` e-mail, `c` subject common name), so the
/// checks after the signature are reached too. Bit 7 of the first byte makes modes 0 and 1
/// ask as the admin instead of service `web`.
///
/// Properties of every issued leaf: exactly the CSR's one URI SAN, that SAN is
/// `spiffe://mesh.local/service/<name>` with `<name>` the requester's own service (unless
/// admin), no other SAN (DNS and IP SANs a CSR asks for are dropped or refused), the CSR's
/// public key, not a CA, the CA's lifetime, signed by the root.
enum CSRFuzzTarget {
    static let authority = try! CertificateAuthority.create(trustDomain: "mesh.local")
    static let root = try! Certificate(pemEncoded: authority.rootPEM)
    static let key = P256.Signing.PrivateKey()

    static func run(_ data: [UInt8]) {
        guard let control = data.first else { return }
        let rest = Array(data.dropFirst())
        let requester: CertificateAuthority.Requester = control & 0x80 != 0 ? .admin : .service("web")
        switch (control & 0x7F) % 3 {
        case 0:
            check(csrPEM: rest.text, requester: requester)
        case 1:
            check(csrPEM: PEMDocument(type: "CERTIFICATE REQUEST", derBytes: rest).pemString, requester: requester)
        default:
            built(rest.text)
        }
    }

    /// Mode 2: a CSR signed by `key` carrying the SANs the lines ask for.
    private static func built(_ text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first else { return }
        let requester: CertificateAuthority.Requester = first == "*" ? .admin : .service(String(first))
        var names: [GeneralName] = []
        var commonName = "fuzz"
        for line in lines.dropFirst() {
            guard let tag = line.first else { continue }
            let value = String(line.dropFirst())
            switch tag {
            case "u": names.append(.uniformResourceIdentifier(value))
            case "d": names.append(.dnsName(value))
            case "i": names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(value.utf8))))
            case "e": names.append(.rfc822Name(value))
            case "c": commonName = value
            default: continue
            }
        }
        let pem: String
        do {
            let subject = try DistinguishedName { CommonName(commonName) }
            var attributes = CertificateSigningRequest.Attributes()
            if !names.isEmpty {
                let request = ExtensionRequest(extensions: try Certificate.Extensions { SubjectAlternativeNames(names) })
                attributes = CertificateSigningRequest.Attributes([try .init(request)])
            }
            let csr = try CertificateSigningRequest(
                version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key), attributes: attributes,
                signatureAlgorithm: .ecdsaWithSHA256)
            pem = try csr.serializeAsPEM().pemString
        } catch {
            return  // swift-certificates refused to build it (e.g. an over-long name): nothing to send
        }
        check(csrPEM: pem, requester: requester)
    }

    private static func check(csrPEM: String, requester: CertificateAuthority.Requester) {
        let issued: CertificateAuthority.IssuedCertificate
        do {
            issued = try authority.issue(csrPEM: csrPEM, for: requester)
        } catch {
            return
        }
        let identity = issued.identity
        fuzzCheck(identity.trustDomain == authority.trustDomain, "issued \(identity) outside the trust domain")
        guard let service = identity.serviceName else {
            fuzzCheck(false, "issued \(identity), not a service identity")
            return
        }
        if case .service(let allowed) = requester {
            fuzzCheck(service == allowed, "service \(allowed) obtained \(identity)")
        }
        guard let csr = try? CertificateSigningRequest(pemEncoded: csrPEM),
              let leaf = try? Certificate(pemEncoded: issued.certificatePEM)
        else {
            fuzzCheck(false, "issued from an unreadable CSR, or an unreadable leaf")
            return
        }
        let requested = uris(in: try? csr.attributes.extensionRequest?.extensions.subjectAlternativeNames)
        fuzzCheck(requested == [identity.description], "issued \(identity) for a CSR asking for \(requested)")
        let sans: [GeneralName] = (try? leaf.extensions.subjectAlternativeNames).map { Array($0) } ?? []
        fuzzCheck(uris(in: sans) == [identity.description], "the leaf carries URIs \(uris(in: sans)), not \(identity)")
        for name in sans {
            switch name {
            case .uniformResourceIdentifier: continue
            default: fuzzCheck(false, "the leaf carries \(name)")
            }
        }
        fuzzCheck(leaf.publicKey == csr.publicKey, "the leaf's key is not the CSR's")
        fuzzCheck((try? leaf.extensions.basicConstraints) == .notCertificateAuthority, "the leaf may act as a CA")
        fuzzCheck(leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore) == CertificateAuthority.clockSkewAllowance + authority.leafLifetime,
                  "the leaf lives \(leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)) s")
        fuzzCheck(leaf.issuer == root.subject && root.publicKey.isValidSignature(leaf.signature, for: leaf),
                  "the leaf is not signed by the root")
    }

    private static func uris(in names: (some Sequence<GeneralName>)?) -> [String] {
        guard let names else { return [] }
        return names.compactMap { name in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        }
    }
}
