import ArgumentParser
import NIOCore
import NIOPosix
import SidecarCore

/// `mesh-bench tls-handshakes`: back-to-back connections for a fixed time, each a TLS 1.3
/// mutual-auth handshake plus one empty bench request (one round trip, as `openssl s_time -www`
/// makes), with `--concurrency` connections in flight. `--resume` shares one session cache so
/// every connection after the first resumes.
struct TLSHandshakesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-handshakes",
        abstract: "Handshakes per second against a bench server (full, or resumed with --resume)."
    )

    @OptionGroup var pki: PKIOptions
    @OptionGroup var target: TargetOptions

    @Option(help: "How long to run, in seconds.")
    var seconds: Double = 5

    @Option(help: "Connections in flight at once (each loops sequentially).")
    var concurrency: Int = 1

    @Flag(help: "Resume sessions (TLS 1.3 tickets) instead of full handshakes.")
    var resume = false

    @Option(help: "Client event-loop threads.")
    var threads: Int = 1

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let client = try BenchClient(
            group: group, context: try pki.makeContext(role: .client), host: target.host, port: target.port,
            sessionKey: resume ? "bench-\(target.host):\(target.port)" : nil)
        if resume {  // obtain a ticket first
            _ = try await client.exchange(payloadBytes: 0, chunk: ByteBuffer(), on: group.next()).get()
        }

        let start = NIODeadline.now()
        let deadline = start + .nanoseconds(Int64(seconds * 1e9))
        let (total, resumed) = try await withThrowingTaskGroup(of: (Int, Int).self) { tasks in
            for _ in 0..<max(1, concurrency) {
                let eventLoop = group.next()
                tasks.addTask { try await client.exchanges(payloadBytes: 0, until: deadline, on: eventLoop).get() }
            }
            return try await tasks.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
        }
        let elapsed = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        print(
            "tls-handshakes mode=\(resume ? "resumed" : "full") connections=\(total) resumed=\(resumed)"
                + " seconds=\(format(elapsed)) rate=\(format(Double(total) / elapsed))")
        try await group.shutdownGracefully()
    }
}

func format(_ value: Double) -> String {
    let scaled = (value * 1000).rounded() / 1000
    return "\(scaled)"
}
