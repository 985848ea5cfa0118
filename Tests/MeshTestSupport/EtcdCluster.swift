import ControlPlane
import Foundation
import MeshCertificates
import SidecarCore
import Testing

/// A real etcd cluster (Debian's `etcd-server`) of `size` members on free loopback ports, data
/// dirs in a temporary directory removed by `stop`. Members can be killed (SIGKILL) and
/// restarted on their data dirs.
public final class EtcdCluster: @unchecked Sendable {
    public struct Member {
        var name: String
        var clientPort: Int
        var peerPort: Int
        var process: ChildProcess?
    }

    /// `etcd` on PATH or in /usr/bin; nil when not installed (tests then skip, saying so).
    public static var binary: String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"]
        return paths.map { $0 + "/etcd" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public static let missing = "etcd is not installed (apt-get install etcd-server; scripts/install-deps.sh does): etcd tests skipped"

    private let directory = TemporaryDirectory()
    private let lock = NSLock()
    private var members: [Member]
    private let initialCluster: String
    private let binary: String
    /// One per cluster: members with different tokens form different clusters.
    private let clusterToken = "mesh-test-\(UUID().uuidString.prefix(8))"
    private var probe: EtcdClient?
    /// With TLS: client URLs are https, members require client certificates from `ca`.
    public let tls: TLSFiles?

    /// Files for etcd's TLS (server certificate valid for 127.0.0.1) and for a client of it.
    public struct TLSFiles: Sendable {
        public var ca: String
        public var serverCertificate: String
        public var serverKey: String
        public var clientCertificate: String
        public var clientKey: String

        /// Minted now, written under `directory`.
        public static func mint(in directory: String) throws -> TLSFiles {
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

        public var clientFiles: EtcdClient.TLSFiles {
            EtcdClient.TLSFiles(caFile: ca, certificateFile: clientCertificate, keyFile: clientKey)
        }
    }

    public init(size: Int = 3, tls: Bool = false) async throws {
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

    public var endpoints: String { lock.withLock { members.map { "\(scheme)://127.0.0.1:\($0.clientPort)" }.joined(separator: ",") } }

    public func endpoint(_ index: Int) -> String { lock.withLock { "\(scheme)://127.0.0.1:\(members[index].clientPort)" } }

    public var logs: String {
        lock.withLock { members.compactMap { $0.process.map { "\($0.stderr)" } }.joined(separator: "\n---\n") }
    }

    public func start(_ index: Int) throws {
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

    public func kill(_ index: Int) {
        let process = lock.withLock { members[index].process }
        process?.terminate()
        lock.withLock { members[index].process = nil }
    }

    /// SIGSTOP (or SIGCONT): the member keeps its connections open and answers nothing.
    public func pause(_ index: Int, _ paused: Bool = true) {
        guard let process = lock.withLock({ members[index].process }) else { return }
        _ = Foundation.kill(process.process.processIdentifier, paused ? SIGSTOP : SIGCONT)
    }

    public func restart(_ index: Int) throws {
        kill(index)
        try start(index)
    }

    /// A write to the cluster succeeds (it has a leader and quorum).
    public func canWrite() async -> Bool {
        guard let client = lock.withLock({ probe }) else { return false }
        return (try? await client.call(
            "/v3/kv/put", ["key": Data("/health-probe".utf8).base64EncodedString(), "value": ""], as: EtcdRangeProbe.self)) != nil
    }

    public func stop() {
        for index in 0..<lock.withLock({ members.count }) { kill(index) }
        directory.remove()
    }
}

private struct EtcdRangeProbe: Decodable, Sendable {}

public struct EtcdClusterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: One cluster shared by the suites that ask for it

extension EtcdCluster {
    /// The one-member cluster of the suite running now (`.sharedEtcdCluster`); nil outside one,
    /// or when etcd is not installed.
    @TaskLocal public static var shared: EtcdCluster?

    /// A one-member cluster for every suite that runs while one is in use: started by the first
    /// suite in, stopped when the last one leaves. Each user takes a fresh key prefix, so tests
    /// sharing it never see each other's keys.
    fileprivate static let sharing = SharedCluster()

    fileprivate final class SharedCluster: @unchecked Sendable {
        private let lock = NSLock()
        private var users = 0
        private var starting: Task<EtcdCluster, any Error>?

        func acquire() async throws -> EtcdCluster {
            let task = lock.withLock {
                users += 1
                if let starting { return starting }
                let task = Task { try await EtcdCluster(size: 1) }
                starting = task
                return task
            }
            do {
                return try await task.value
            } catch {
                await release()
                throw error
            }
        }

        /// Stops the cluster (before returning, so no member outlives the test run) if this
        /// was its last user.
        func release() async {
            let last: Task<EtcdCluster, any Error>? = lock.withLock {
                users -= 1
                guard users == 0 else { return nil }
                defer { starting = nil }
                return starting
            }
            try? await last?.value.stop()
        }
    }
}

/// `@Suite(.sharedEtcdCluster)`: the suite's tests find a running one-member etcd cluster in
/// `EtcdCluster.shared` (one for all such suites running at once, instead of one per test).
/// Without etcd installed the suite runs without one (its etcd cases are not generated).
public struct SharedEtcdClusterTrait: SuiteTrait, TestScoping {
    public var isRecursive: Bool { false }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard EtcdCluster.binary != nil else { return try await function() }
        let cluster = try await EtcdCluster.sharing.acquire()
        do {
            try await EtcdCluster.$shared.withValue(cluster) { try await function() }
        } catch {
            await EtcdCluster.sharing.release()
            throw error
        }
        await EtcdCluster.sharing.release()
    }
}

extension Trait where Self == SharedEtcdClusterTrait {
    public static var sharedEtcdCluster: Self { SharedEtcdClusterTrait() }
}
