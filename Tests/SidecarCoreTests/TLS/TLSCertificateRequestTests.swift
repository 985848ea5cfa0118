import Crypto
import MeshCertificates
import MeshTestSupport
import SidecarCore
import Testing
import X509

/// The key and CSR a dynamic sidecar makes with OpenSSL, read back with swift-certificates (as
/// the control plane's CA reads them): the SPIFFE ID as the only SAN, a valid self-signature
/// by the key the sidecar keeps, and a leaf signed from it that a TLS context accepts with that key.
@Suite struct TLSCertificateRequestTests {
    let identity = SPIFFEID.service("web")!

    @Test func theCSRParsesWithSwiftCertificatesAndCarriesTheSPIFFEIDAndTheKey() throws {
        let request = try TLSCertificateRequest.make(identity: identity)
        #expect(request.keyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        #expect(request.csrPEM.hasPrefix("-----BEGIN CERTIFICATE REQUEST-----\n"))
        let csr = try CertificateSigningRequest(pemEncoded: request.csrPEM)
        #expect(csr.version == .v1)
        #expect(csr.publicKey.isValidSignature(csr.signature, for: csr))
        #expect(csr.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(csr.subject == (try DistinguishedName { CommonName("web") }))
        let sans = try #require(try csr.attributes.extensionRequest?.extensions.subjectAlternativeNames)
        #expect(Array(sans) == [.uniformResourceIdentifier("spiffe://mesh.local/service/web")])
        let key = try P256.Signing.PrivateKey(pemRepresentation: request.keyPEM)
        #expect(csr.publicKey == Certificate.PublicKey(key.publicKey))
    }

    @Test func eachRequestHasItsOwnKey() throws {
        let first = try TLSCertificateRequest.make(identity: identity)
        let second = try TLSCertificateRequest.make(identity: identity)
        #expect(first.keyPEM != second.keyPEM)
        #expect(first.csrPEM != second.csrPEM)
    }

    @Test func theCASignsItAndTheLeafServesWithTheKeptKey() throws {
        let pki = TestPKI()
        let request = try TLSCertificateRequest.make(identity: SPIFFEID.service("payments", trustDomain: "corp.example")!)
        let inspected = try CertificateMinting.inspectCSR(request.csrPEM)
        #expect(inspected.identities == [SPIFFEID.service("payments", trustDomain: "corp.example")!])
        #expect(inspected.dnsNames.isEmpty && inspected.ipAddressCount == 0)
        let leaf = try CertificateMinting.signLeaf(
            csrPEM: request.csrPEM, issuerCertificatePEM: pki.rootPEM, issuerKeyPEM: pki.rootKeyPEM)
        #expect(try TLSCertificate.loadChain(from: .pem(leaf)).first?.spiffeID == inspected.identities.first)
        // The context checks that the key is the certificate's.
        let served = TestIdentity(certificatePEM: leaf, keyPEM: request.keyPEM, trustPEM: pki.rootPEM)
        _ = try TLSContext(configuration: served.configuration(peerIdentity: .trustDomain("corp.example")), role: .server)
    }

    @Test func sha256MatchesTheStandardVectors() {
        let hex = { (bytes: [UInt8]) in bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
        #expect(hex(TLSDigest.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(TLSDigest.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let million = [UInt8](repeating: 0x61, count: 1_000_000)
        #expect(TLSDigest.sha256(million) == Array(SHA256.hash(data: million)))
    }
}
