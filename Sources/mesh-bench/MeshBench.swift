import ArgumentParser

/// The `mesh-bench` command: load generators and peers for the benchmarks in `bench/`.
///
/// Each subcommand is one side of one measurement and prints `key=value` lines that the
/// `bench/*.sh` scripts parse; the scripts run the comparison (OpenSSL, nginx, …) and the
/// interleaving. Building blocks (`PKIOptions`, `BenchProtocol`, the client loops) are meant to
/// be reused by the sidecar benchmark.
@main
struct MeshBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh-bench",
        abstract: "Benchmarks for the mesh data plane and control plane (see bench/README.md).",
        subcommands: [
            MintCommand.self,
            TLSServerCommand.self,
            TLSHandshakesCommand.self,
            TLSBulkCommand.self,
            ControlPlaneLoadCommand.self,
        ]
    )
}
