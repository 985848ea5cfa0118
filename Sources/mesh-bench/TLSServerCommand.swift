import ArgumentParser
import NIOCore
import NIOPosix
import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// `mesh-bench tls-server`: our `TLSHandler` in front of the `BenchProtocol` sink, on as many
/// event loops as asked (one by default, to compare with single-threaded `openssl s_server`).
/// Prints the bound port on the first line of stdout, then serves until killed.
struct TLSServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-server",
        abstract: "Serve the bench protocol over our TLS (mutual auth, TLS 1.3); prints the bound port."
    )

    @OptionGroup var pki: PKIOptions

    @Option(help: "Address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to bind (0: any free port).")
    var port: Int = 0

    @Option(help: "Event-loop threads.")
    var threads: Int = 1

    func run() async throws {
        let context = try pki.makeContext(role: .server)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 512)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(SinkServerHandler())
                }
            }
            .bind(host: host, port: port).get()
        print(channel.localAddress?.port ?? -1)
        fflush(nil)  // stdout is a pipe or file in scripts: the port must not wait in a buffer
        try await channel.closeFuture.get()
    }
}
