import Crypto
import Foundation
import MeshCertificates
import SidecarCore

/// The control plane's data dir: `ca.pem` (trust bundle), `ca.key`, `admin.token`,
/// `mesh.sqlite`. Created on first start with secrets mode 0600, reused afterwards.
public struct DataDirectory: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public var caCertificatePath: String { path + "/ca.pem" }
    public var caKeyPath: String { path + "/ca.key" }
    public var adminTokenPath: String { path + "/admin.token" }
    public var storePath: String { path + "/mesh.sqlite" }

    public struct Loaded: Sendable {
        public var authority: CertificateAuthority
        public var adminToken: String
        /// Whether this start created the CA and token.
        public var created: Bool
    }

    /// Loads the CA and admin token, creating them (and the dir) when absent.
    public func loadOrCreate(trustDomain: String) throws(DataDirectoryError) -> Loaded {
        let files = FileManager.default
        do {
            try files.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw DataDirectoryError("cannot create data dir \(path): \(error.localizedDescription)")
        }
        let hasCA = files.fileExists(atPath: caCertificatePath), hasKey = files.fileExists(atPath: caKeyPath)
        guard hasCA == hasKey else {
            throw DataDirectoryError(
                "\(hasCA ? caKeyPath : caCertificatePath) is missing while \(hasCA ? caCertificatePath : caKeyPath) exists; "
                    + "restore it or remove both to make a new CA")
        }
        var created = false
        let authority: CertificateAuthority
        if hasCA {
            let root = try read(caCertificatePath), key = try read(caKeyPath)
            guard CertificateMinting.certificate(in: root, matching: key) != nil else {
                throw DataDirectoryError("\(caKeyPath) is the key of no certificate in \(caCertificatePath); "
                    + "during root rotation ca.pem holds the old and the new root and ca.key is the new root's key")
            }
            authority = CertificateAuthority(rootPEM: root, rootKeyPEM: key, trustDomain: trustDomain)
        } else {
            do {
                authority = try CertificateAuthority.create(trustDomain: trustDomain)
            } catch {
                throw DataDirectoryError("cannot create the CA: \(error)")
            }
            try write(authority.rootKeyPEM, to: caKeyPath)
            try write(authority.rootPEM, to: caCertificatePath)
            created = true
        }
        let token: String
        if files.fileExists(atPath: adminTokenPath) {
            token = try read(adminTokenPath).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw DataDirectoryError("\(adminTokenPath) is empty") }
        } else {
            token = Self.makeSecret()
            try write(token + "\n", to: adminTokenPath)
            created = true
        }
        return Loaded(authority: authority, adminToken: token, created: created)
    }

    /// With the etcd store the CA and admin token live in etcd; a replica's data dir holds the
    /// trust bundle and the admin token for the operator CLI on its machine (never the CA key).
    public func saveForOperators(rootPEM: String, adminToken: String) throws(DataDirectoryError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw DataDirectoryError("cannot create data dir \(path): \(error.localizedDescription)")
        }
        try write(rootPEM, to: caCertificatePath)
        try write(adminToken + "\n", to: adminTokenPath)
    }

    /// 32 random bytes, hex.
    public static func makeSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return hex((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// SHA-256 hex of a secret (join tokens are stored hashed). Every sidecar request with a
    /// join token hashes it, so no `String(format:)` per byte.
    public static func hash(_ secret: String) -> String {
        hex(SHA256.hash(data: Array(secret.utf8)))
    }

    private static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in bytes { text += [digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]] }
        return String(decoding: text, as: UTF8.self)
    }

    private func read(_ file: String) throws(DataDirectoryError) -> String {
        do {
            return try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw DataDirectoryError("cannot read \(file): \(error.localizedDescription)")
        }
    }

    /// Writes via a temporary file and rename, mode 0600, so a crash never leaves half a key.
    private func write(_ text: String, to file: String) throws(DataDirectoryError) {
        let temporary = file + ".tmp"
        guard FileManager.default.createFile(
            atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        else { throw DataDirectoryError("cannot write \(temporary)") }
        guard rename(temporary, file) == 0 else {
            throw DataDirectoryError("cannot rename \(temporary) to \(file): \(String(cString: strerror(errno)))")
        }
    }
}

public struct DataDirectoryError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
