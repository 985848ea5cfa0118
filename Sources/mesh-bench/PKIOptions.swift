import ArgumentParser
import SidecarCore

/// Where a benchmark peer finds the files `mesh-bench mint` wrote, turned into the mesh's
/// sidecar-to-sidecar TLS profile (TLS 1.3 only, mutual authentication, trust-domain check).
struct PKIOptions: ParsableArguments {
    @Option(help: "Directory with ca.pem, server.pem/.key, client.pem/.key (from `mesh-bench mint`).")
    var dir: String

    /// The context for `role`, built once and shared by every connection of the run.
    func makeContext(role: TLSRole) throws -> TLSContext {
        let name = role == .server ? "server" : "client"
        let configuration = TLSConfiguration.mesh(
            certificateChain: .file("\(dir)/\(name).pem"),
            privateKey: .file("\(dir)/\(name).key"),
            trustRoots: .file("\(dir)/ca.pem"))
        return try TLSContext(configuration: configuration, role: role)
    }
}

/// Where a benchmark client connects.
struct TargetOptions: ParsableArguments {
    @Option(help: "Server address.")
    var host: String = "127.0.0.1"

    @Option(help: "Server port (as printed by `mesh-bench tls-server`).")
    var port: Int
}
