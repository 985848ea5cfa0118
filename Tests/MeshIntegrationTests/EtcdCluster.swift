import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore

/// A real etcd cluster (Debian's `etcd-server`) of `size` members on free loopback ports, data
/// dirs in a temporary directory removed by `stop`. Members can be killed (SIGKILL) and
/// restarted on their data dirs.
final class EtcdCluster: @unchecked Sendable {
    struct Member {
        var name: String
        var clientPort: Int
        var peerPort: Int
        var process: ChildProcess?
    }

    /// `etcd` on PATH or in /usr/bin; nil when not installed (tests then skip, saying so).
    static var binary: String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"]
        return paths.map { $0 + "/etcd" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static let missing = "etcd is not installed (apt-get install etcd-server; scripts/install-deps.sh does): etcd tests skipped"

    private let directory = TemporaryDirectory()
    private let lock = NSLock()
    private var members: [Member]
    private let initialCluster: String
    private let binary: String
    /// One per cluster: members with different tokens form different clusters.
    private let clusterToken = "mesh-test-\(UUID().uuidString.prefix(8))"
    private var probe: EtcdClient?
    /// With TLS: client URLs are https, members require client certificates from `ca`.
    let tls: TLSFiles?

    /// Files for etcd's TLS (server certificate valid for 127.0.0.1) and for a client of it.
    struct TLSFiles: Sendable {
        var ca: String
        var serverCertificate: String
        var serverKey: String
        var clientCertificate: String
        var clientKey: String

        /// Minted now, written under `directory`.
        static func mint(in directory: String) throws -> TLSFiles {
            let pki = TestPKI(commonName: "etcd test root")
            let serverKey = CertificateMinting.makePrivateKeyPEM()
            let serverCertificate = try CertificateMinting.signServerLeaf(
                identity: SPIFFEID.service("etcd")!, keyPEM: serverKey, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"],
                issuerCertificatePEM: pki.rootPEM, issuerKeyPEM: pki.rootKeyPEM)
            let client = pki.issue(service: "control-plane")
            let files = TLSFiles(
                ca: directory + "/etcd-ca.pem", serverCertificate: directory + "/etcd-server.pem",
                serverKey: directory + "/etcd-server.key", clientCertificate: directory + "/etcd-client.pem",
                clientKey: directory + "/etcd-client.key")
            for (text, path) in [
                (pki.rootPEM, files.ca), (serverCertificate, files.serverCertificate), (serverKey, files.serverKey),
                (client.certificatePEM, files.clientCertificate), (client.keyPEM, files.clientKey),
            ] {
                guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
                else { throw EtcdClusterError("cannot write \(path)") }
            }
            return files
        }

        var clientFiles: EtcdClient.TLSFiles {
            EtcdClient.TLSFiles(caFile: ca, certificateFile: clientCertificate, keyFile: clientKey)
        }
    }

    init(size: Int = 3, tls: Bool = false) async throws {
        guard let binary = Self.binary else { throw EtcdClusterError(Self.missing) }
        self.binary = binary
        self.tls = tls ? try TLSFiles.mint(in: directory.path) : nil
        var members: [Member] = []
        for index in 0..<size {
            members.append(Member(name: "m\(index)", clientPort: try freeLoopbackPort(), peerPort: try freeLoopbackPort()))
        }
        self.members = members
        initialCluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        for index in 0..<size { try start(index) }
        probe = try EtcdClient(endpoints: try EtcdClient.parseEndpoints(endpoints), tls: self.tls?.clientFiles, requestTimeout: .seconds(1))
        guard await eventually(timeout: .seconds(30), { await self.canWrite() }) else {
            let logs = self.logs
            stop()
            throw EtcdClusterError("etcd cluster did not become ready: \(logs.suffix(3000))")
        }
    }

    private var scheme: String { tls == nil ? "http" : "https" }

    var endpoints: String { lock.withLock { members.map { "\(scheme)://127.0.0.1:\($0.clientPort)" }.joined(separator: ",") } }

    func endpoint(_ index: Int) -> String { lock.withLock { "\(scheme)://127.0.0.1:\(members[index].clientPort)" } }

    var logs: String {
        lock.withLock { members.compactMap { $0.process.map { "\($0.stderr)" } }.joined(separator: "\n---\n") }
    }

    func start(_ index: Int) throws {
        let member = lock.withLock { members[index] }
        let tlsArguments = tls.map {
            ["--cert-file", $0.serverCertificate, "--key-file", $0.serverKey, "--trusted-ca-file", $0.ca, "--client-cert-auth"]
        } ?? []
        let process = try ChildProcess([
            binary, "--name", member.name, "--data-dir", directory.path + "/" + member.name,
            "--listen-client-urls", "\(scheme)://127.0.0.1:\(member.clientPort)",
            "--advertise-client-urls", "\(scheme)://127.0.0.1:\(member.clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", initialCluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", clusterToken,
            // Fast elections on loopback, so a lost member is noticed quickly.
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-level", "warn",
        ] + tlsArguments)
        lock.withLock { members[index].process = process }
    }

    func kill(_ index: Int) {
        let process = lock.withLock { members[index].process }
        process?.terminate()
        lock.withLock { members[index].process = nil }
    }

    /// SIGSTOP (or SIGCONT): the member keeps its connections open and answers nothing.
    func pause(_ index: Int, _ paused: Bool = true) {
        guard let process = lock.withLock({ members[index].process }) else { return }
        _ = Foundation.kill(process.process.processIdentifier, paused ? SIGSTOP : SIGCONT)
    }

    func restart(_ index: Int) throws {
        kill(index)
        try start(index)
    }

    /// A write to the cluster succeeds (it has a leader and quorum).
    func canWrite() async -> Bool {
        guard let client = lock.withLock({ probe }) else { return false }
        return (try? await client.call(
            "/v3/kv/put", ["key": Data("/health-probe".utf8).base64EncodedString(), "value": ""], as: EtcdRangeProbe.self)) != nil
    }

    func stop() {
        for index in 0..<lock.withLock({ members.count }) { kill(index) }
        directory.remove()
    }
}

private struct EtcdRangeProbe: Decodable, Sendable {}

struct EtcdClusterError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
