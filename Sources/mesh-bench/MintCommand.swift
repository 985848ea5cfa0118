import ArgumentParser
import Foundation
import MeshCertificates
import SidecarCore

/// `mesh-bench mint`: writes a throwaway PKI for benchmarks with `CertificateMinting` (P-256,
/// SPIFFE URI SANs, the same shape as the control plane's CA issues): `ca.pem`, `ca.key`,
/// `server.pem`/`server.key` and `client.pem`/`client.key`. Keys are PKCS#8 PEM, readable by
/// the `openssl` CLI and socat, so both sides of a comparison use the same certificates.
struct MintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mint",
        abstract: "Write ca.pem, server.pem/.key and client.pem/.key (P-256) into a directory."
    )

    @Option(help: "Directory to write into (created if missing).")
    var dir: String

    @Option(help: "Trust domain of the SPIFFE IDs (spiffe://<domain>/service/server|client).")
    var trustDomain: String = SPIFFEID.defaultTrustDomain

    @Option(help: "Validity of the leaves, in hours.")
    var lifetimeHours: Int = 24

    func run() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let rootKey = CertificateMinting.makePrivateKeyPEM()
        let root = try CertificateMinting.makeRoot(commonName: "mesh bench root", keyPEM: rootKey)
        try write(root, to: "ca.pem")
        try write(rootKey, to: "ca.key", secret: true)
        for name in ["server", "client"] {
            guard let identity = SPIFFEID.service(name, trustDomain: trustDomain) else {
                throw ValidationError("invalid trust domain \(trustDomain)")
            }
            let key = CertificateMinting.makePrivateKeyPEM()
            // `localhost` for the peers that check host names (curl, haproxy); a CA-signed CSR
            // would carry the SPIFFE ID only.
            let leaf = try CertificateMinting.signServerLeaf(
                identity: identity, keyPEM: key, dnsNames: ["localhost"], ipAddresses: [],
                issuerCertificatePEM: root, issuerKeyPEM: rootKey, lifetime: TimeInterval(lifetimeHours) * 3600)
            try write(leaf, to: "\(name).pem")
            try write(key, to: "\(name).key", secret: true)
        }
        print("wrote ca.pem server.pem server.key client.pem client.key to \(dir)")
    }

    private func write(_ text: String, to name: String, secret: Bool = false) throws {
        let path = (dir as NSString).appendingPathComponent(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        if secret {
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        }
    }
}
