import ArgumentParser
import NIOCore
import NIOPosix
import SidecarCore

/// `mesh-bench tls-bulk`: one TLS connection carrying `--bytes` of payload to the bench server,
/// written in `--chunk`-sized writes as fast as the channel's writability allows. Prints the
/// transfer time from handshake completion to the server's answer.
struct TLSBulkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-bulk",
        abstract: "Bulk throughput of one TLS connection to a bench server."
    )

    @OptionGroup var pki: PKIOptions
    @OptionGroup var target: TargetOptions

    @Option(help: "Payload size in bytes.")
    var bytes: UInt64 = 1 << 30

    @Option(help: "Size of each plaintext write, in bytes.")
    var chunk: Int = 64 * 1024

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = try BenchClient(
            group: group, context: try pki.makeContext(role: .client), host: target.host, port: target.port,
            sessionKey: nil)
        let payload = ByteBuffer(repeating: 0, count: max(1, chunk))
        let exchange = try await client.exchange(payloadBytes: bytes, chunk: payload, on: group.next()).get()
        let seconds = Double(exchange.transferNanoseconds) / 1e9
        print(
            "tls-bulk bytes=\(bytes) chunk=\(chunk) seconds=\(format(seconds))"
                + " MBps=\(format(Double(bytes) / seconds / 1e6))")
        try await group.shutdownGracefully()
    }
}
