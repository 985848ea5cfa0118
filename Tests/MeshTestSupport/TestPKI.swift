import Foundation
import MeshCertificates
import SidecarCore

/// A certificate authority minted at test time, issuing workload certificates with any
/// identity and validity window a test needs (expired, not yet valid, foreign trust domain).
public struct TestPKI: Sendable {
    public let rootPEM: String
    public let rootKeyPEM: String

    public init(commonName: String = "mesh test root") {
        let key = CertificateMinting.makePrivateKeyPEM()
        self.rootKeyPEM = key
        self.rootPEM = try! CertificateMinting.makeRoot(commonName: commonName, keyPEM: key)
    }

    /// A leaf for `spiffe://<trustDomain>/service/<service>`.
    public func issue(
        service: String,
        trustDomain: String = "mesh.local",
        dnsNames: [String] = [],
        notBefore: Date = Date().addingTimeInterval(-60),
        lifetime: TimeInterval = 3600
    ) -> TestIdentity {
        issue(identity: SPIFFEID.service(service, trustDomain: trustDomain)!, dnsNames: dnsNames,
              notBefore: notBefore, lifetime: lifetime)
    }

    public func issue(
        identity: SPIFFEID,
        dnsNames: [String] = [],
        notBefore: Date = Date().addingTimeInterval(-60),
        lifetime: TimeInterval = 3600
    ) -> TestIdentity {
        let key = CertificateMinting.makePrivateKeyPEM()
        let cert: String
        if dnsNames.isEmpty {
            // The CA's path: a CSR whose SPIFFE ID becomes the leaf's only SAN.
            let csr = try! CertificateMinting.makeCSR(identity: identity, keyPEM: key)
            cert = try! CertificateMinting.signLeaf(
                csrPEM: csr, issuerCertificatePEM: rootPEM, issuerKeyPEM: rootKeyPEM,
                notBefore: notBefore, lifetime: lifetime)
        } else {
            // Signing a CSR drops DNS names; a test server that curl checks by host name gets a
            // server leaf (as the control plane's own certificate is made).
            cert = try! CertificateMinting.signServerLeaf(
                identity: identity, keyPEM: key, dnsNames: dnsNames, ipAddresses: [],
                issuerCertificatePEM: rootPEM, issuerKeyPEM: rootKeyPEM, notBefore: notBefore, lifetime: lifetime)
        }
        return TestIdentity(certificatePEM: cert, keyPEM: key, trustPEM: rootPEM)
    }
}

/// A workload's certificate, key and the trust bundle that verifies its peers.
public struct TestIdentity: Sendable {
    public let certificatePEM: String
    public let keyPEM: String
    public var trustPEM: String

    public init(certificatePEM: String, keyPEM: String, trustPEM: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.trustPEM = trustPEM
    }

    /// A TLS configuration presenting this identity (mesh profile unless changed).
    public func configuration(
        peerIdentity: PeerIdentityPolicy = .trustDomain("mesh.local"),
        minimumVersion: TLSConfiguration.ProtocolVersion = .tls13,
        maximumVersion: TLSConfiguration.ProtocolVersion = .tls13,
        presentCertificate: Bool = true,
        handshakeTimeout: Int64 = 10
    ) -> TLSConfiguration {
        TLSConfiguration(
            certificateChain: presentCertificate ? .pem(certificatePEM, name: "test cert") : nil,
            privateKey: presentCertificate ? .pem(keyPEM, name: "test key") : nil,
            trustRoots: .pem(trustPEM, name: "test trust bundle"),
            minimumVersion: minimumVersion,
            maximumVersion: maximumVersion,
            alpnProtocols: ["http/1.1"],
            certificateVerification: .fullVerification,
            peerIdentity: peerIdentity,
            handshakeTimeout: .seconds(handshakeTimeout)
        )
    }

    /// Writes cert, key and trust bundle as files named `<name>.pem`, `<name>.key`, `ca.pem`.
    @discardableResult
    public func write(to directory: URL, name: String) throws -> (cert: String, key: String, ca: String) {
        let cert = directory.appendingPathComponent("\(name).pem").path
        let key = directory.appendingPathComponent("\(name).key").path
        let ca = directory.appendingPathComponent("ca.pem").path
        try certificatePEM.write(toFile: cert, atomically: true, encoding: .utf8)
        try keyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        try trustPEM.write(toFile: ca, atomically: true, encoding: .utf8)
        return (cert, key, ca)
    }
}

/// A fresh temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL
    public init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-test-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public var path: String { url.path }
    public func remove() { try? FileManager.default.removeItem(at: url) }
}
