import ArgumentParser
import ControlPlane
import Foundation
import Logging
import ServiceLifecycle
import SidecarCore

/// `control-plane serve`: opens (or creates) the data dir and serves the HTTPS API until killed.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the control plane API server.",
        discussion: """
            On first start creates the CA (ca.pem, ca.key, 10 years) and an admin token (admin.token) in the \
            data dir, all mode 0600, and prints their paths; later starts reuse them. Prints \
            "listening on https://HOST:PORT" once the API accepts connections (with --listen HOST:0, the \
            port the OS picked) and records that URL in DIR/server.url for operator commands using --data-dir.

            With --store etcd --etcd-endpoints URL,… the control plane is one of several replicas over an etcd v3 \
            cluster: resources, registrations, join tokens, the CA and the admin token live in etcd under \
            --etcd-prefix (the first replica on an empty prefix creates the CA and token, the others load them); \
            the data dir then holds only ca.pem, admin.token and server.url for the CLI. Each replica watches etcd \
            and pushes changes to its own sidecars. Without etcd quorum, writes answer 503 store-unavailable while \
            reads and watches serve the replica's copy.

            Every API route but /metrics checks its caller (admin bearer token, join token or client \
            certificate) on the request head and answers 401/403 before reading a body. Bodies are at most \
            1 MiB each and 64 MiB for all connections together (503 beyond), and must arrive within 15s of \
            their head (408 after).

            Also serves the read-only dashboard at https://HOST:PORT/ui/ (sign in with the admin token); \
            with --prometheus URL its topology edges carry request and success rates and service pages \
            show golden-metric charts.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Directory holding the CA, admin token and store.", valueName: "dir"))
    var dataDir: String

    @Option(name: .long, help: ArgumentHelp("Address to listen on (port 0 picks a free port).", valueName: "host:port"))
    var listen: String = "127.0.0.1:15010"

    @Option(name: .long, help: ArgumentHelp("Resource store backend: sqlite (embedded) or etcd.", valueName: "sqlite|etcd"))
    var store: String = "sqlite"

    @Option(name: .long, help: ArgumentHelp("etcd endpoints, comma-separated (with --store etcd).", valueName: "urls"))
    var etcdEndpoints: String?

    @Option(name: .long, help: ArgumentHelp("Key prefix in etcd that replicas of one mesh share (with --store etcd).", valueName: "prefix"))
    var etcdPrefix: String = "/mesh"

    @Option(name: .long, help: ArgumentHelp("CA bundle etcd's member certificates chain to (https:// endpoints).", valueName: "file"))
    var etcdCaFile: String?

    @Option(name: .long, help: ArgumentHelp("Client certificate to present to etcd (with --etcd-key-file).", valueName: "file"))
    var etcdCertFile: String?

    @Option(name: .long, help: ArgumentHelp("Key of --etcd-cert-file.", valueName: "file"))
    var etcdKeyFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "Prometheus base URL for the dashboard's traffic edges and golden-metric charts (none by default).", valueName: "url"))
    var prometheus: String?

    @Option(name: .long, help: ArgumentHelp("SPIFFE trust domain of issued identities.", valueName: "domain"))
    var trustDomain: String = SPIFFEID.defaultTrustDomain

    @Option(name: .long, help: ArgumentHelp(
        "Most API connections open at once (each sidecar holds one for its watch); more are closed as they are accepted.", valueName: "n"))
    var maxConnections: Int = APIServer.Limits().maxConnections

    /// From a request's head to the end of its body (408 after); tests shorten it.
    @Option(name: .long, help: .hidden)
    var requestBodyTimeout: String = "15s"

    @Option(name: .long, help: .hidden)
    var instanceTTL: String = "15s"

    @Option(name: .long, help: .hidden)
    var instanceGrace: String = "1m"

    @Option(name: .long, help: .hidden)
    var watchTimeout: String = "30s"

    /// Workload certificate lifetime; tests shorten it to see sidecars renew.
    @Option(name: .long, help: .hidden)
    var certificateLifetime: String = "24h"

    func run() async throws {
        try await reportingErrors {
            let address: HostPort
            switch HostPort.parse(listen) {
            case .success(let parsed): address = parsed
            case .failure(let why): throw CLIFailure("--listen \"\(listen)\" \(why.reason)")
            }
            switch store {
            case "sqlite":
                guard etcdEndpoints == nil else { throw CLIFailure("--etcd-endpoints needs --store etcd") }
            case "etcd":
                guard etcdEndpoints != nil else {
                    throw CLIFailure("--store etcd needs --etcd-endpoints http://HOST:2379,… (the etcd cluster's client URLs)")
                }
            default: throw CLIFailure("--store \"\(store)\" is unknown; use sqlite or etcd")
            }
            guard SPIFFEID.isValidTrustDomain(Substring(trustDomain)) else {
                throw CLIFailure("--trust-domain \"\(trustDomain)\" is not a valid SPIFFE trust domain")
            }
            let ttl = try Self.duration(instanceTTL, option: "--instance-ttl")
            let grace = try Self.duration(instanceGrace, option: "--instance-grace")
            let watch = try Self.duration(watchTimeout, option: "--watch-timeout")
            let lifetime = try Self.duration(certificateLifetime, option: "--certificate-lifetime")
            let bodyTimeout = try Self.duration(requestBodyTimeout, option: "--request-body-timeout")
            let dashboard: Dashboard.Configuration
            do { dashboard = try Dashboard.Configuration(prometheusURL: prometheus) } catch { throw CLIFailure("\(error)") }
            guard maxConnections >= 1 else { throw CLIFailure("--max-connections \(maxConnections) must be at least 1") }
            var limits = APIServer.Limits()
            limits.maxConnections = maxConnections
            limits.bodyTimeout = .nanoseconds(Int64(bodyTimeout.components.seconds) * 1_000_000_000
                + bodyTimeout.components.attoseconds / 1_000_000_000)

            // Everything this process creates (keys, token, database) is private to its user.
            umask(0o077)
            let directory = DataDirectory(path: URL(fileURLWithPath: dataDir).standardizedFileURL.path)
            let opened = try await openStore(directory: directory, registrationTTL: ttl, registrationGrace: grace)
            var loaded = opened.loaded
            let resourceStore = opened.store
            loaded.authority = loaded.authority.withLeafLifetime(
                Double(lifetime.components.seconds) + Double(lifetime.components.attoseconds) / 1e18)
            let controlPlane = try MeshControlPlane(
                store: resourceStore, authority: loaded.authority, adminToken: loaded.adminToken,
                registrySettings: .init(ttl: ttl, grace: grace))
            let router = APIRouter(
                controlPlane: controlPlane, watchTimeout: watch,
                dashboard: Dashboard(controlPlane: controlPlane, configuration: dashboard))
            let server = try await APIServer.start(
                host: address.host, port: address.port, router: router, authority: loaded.authority,
                limits: limits)

            let verb = loaded.created ? "created" : "using"
            let hostText = address.host.contains(":") ? "[\(address.host)]" : address.host
            let url = "https://\(hostText):\(server.port)"
            try? (url + "\n").write(toFile: directory.path + "/server.url", atomically: true, encoding: .utf8)
            var lines = [
                "control-plane \(MeshVersion.current)",
                "\(verb) CA certificate (trust bundle): \(directory.caCertificatePath)",
                "\(verb) CA key: \(directory.caKeyPath)",
                "\(verb) admin token: \(directory.adminTokenPath)",
                "store: \(opened.description) (version \(try resourceStore.currentVersion()))",
                "dashboard: \(url)/ui/",
                "listening on \(url)",
            ]
            if store == "etcd" { lines[2] = "\(verb) CA key: in etcd under \(etcdPrefix) (shared by every replica)" }
            let group = ServiceGroup(
                services: [server, RegistryClock(controlPlane: controlPlane), ReadinessAnnouncement(lines: lines)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "control-plane"))
            try await group.run()
        }
    }

    /// The store, and the CA and admin token: from the data dir with SQLite; from etcd with
    /// etcd (the first replica on an empty prefix creates them), copied to the data dir for the
    /// operator CLI on this machine.
    private func openStore(
        directory: DataDirectory, registrationTTL: Duration, registrationGrace: Duration
    ) async throws -> (store: any ResourceStore, loaded: DataDirectory.Loaded, description: String) {
        guard store == "etcd", let etcdEndpoints else {
            let loaded = try directory.loadOrCreate(trustDomain: trustDomain)
            return (try SQLiteResourceStore(path: directory.storePath), loaded, "sqlite \(directory.storePath)")
        }
        let client: EtcdClient
        do {
            let tls = EtcdClient.TLSFiles(caFile: etcdCaFile, certificateFile: etcdCertFile, keyFile: etcdKeyFile)
            client = try EtcdClient(
                endpoints: try EtcdClient.parseEndpoints(etcdEndpoints),
                tls: etcdCaFile == nil && etcdCertFile == nil && etcdKeyFile == nil ? nil : tls)
        } catch {
            throw CLIFailure("--etcd-endpoints: \(error)")
        }
        let etcdStore: EtcdResourceStore
        do {
            etcdStore = try await EtcdResourceStore(
                client: client, prefix: etcdPrefix, registrationTTL: registrationTTL, registrationGrace: registrationGrace)
        } catch {
            throw CLIFailure("cannot read the store from etcd: \(error)")
        }
        let loaded = try await etcdStore.loadOrCreateAuthority(trustDomain: trustDomain)
        try directory.saveForOperators(rootPEM: loaded.authority.rootPEM, adminToken: loaded.adminToken)
        return (etcdStore, loaded, "etcd \(client.endpointList) prefix \(etcdStore.prefix)")
    }

    static func duration(_ text: String, option: String) throws -> Duration {
        guard let parsed = MeshDuration(parsing: text), parsed.nanoseconds > 0 else {
            throw CLIFailure("\(option) \"\(text)\" is not a positive duration (use 250ms, 2s, 1m)")
        }
        return .nanoseconds(parsed.nanoseconds)
    }
}

/// Prints the startup lines (ending in `listening on ...`) once the service group runs, that
/// is after its SIGTERM handler is in place: whoever sees the line may stop us gracefully.
struct ReadinessAnnouncement: Service {
    let lines: [String]

    func run() async throws {
        // Straight to the file descriptor: stdout may be a file a test polls.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try? await gracefulShutdown()
    }
}
