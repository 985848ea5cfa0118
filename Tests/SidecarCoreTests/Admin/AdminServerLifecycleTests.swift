import Foundation
import Logging
import MeshTestSupport
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

@testable import SidecarCore

/// The admin server as a `Service` in a `ServiceGroup`: graceful shutdown closes the listener
/// and open keep-alive connections, and `run()` returns.
@Suite struct AdminServerLifecycleTests {
    @Test func gracefulShutdownStopsTheServer() async throws {
        let server = AdminServer(
            port: 0, providers: AdminProviders(metrics: SidecarMetrics().registry, readiness: { .ready }))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [server], gracefulShutdownSignals: [], logger: Logger(label: "admin-test")))
        let running = Task { try await group.run() }
        #expect(await eventually { server.boundPort != nil })
        let port = try #require(server.boundPort)
        #expect(try await AdminServerTests.curl(port, "/live").status == 200)

        // A client holding a keep-alive connection open must not keep the server alive. It is
        // confirmed connected (its request answered, the connection still open) before shutdown.
        let received = ReceivedBytes()
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await client.writeAndFlush(ByteBuffer(string: "GET /live HTTP/1.1\r\nHost: admin\r\n\r\n"))
        #expect(await eventually { received.text.hasPrefix("HTTP/1.1 200 OK\r\n") && received.text.contains("\r\n\r\nlive") },
                "\(received.text)")
        #expect(!received.text.lowercased().contains("connection: close"))
        #expect(client.isActive, "the keep-alive connection is open and idle")

        await group.triggerGracefulShutdown()
        let stopped = Task {
            try await running.value
            return true
        }
        #expect(try await stopped.value)
        #expect(server.boundPort == nil)
        // The server closed the keep-alive connection, and nothing listens any more.
        #expect(await eventually { !client.isActive })
        let refused = try await ChildProcess.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:\(port)/live"])
        #expect(refused.status == 7, "curl: could not connect")
    }
}

extension AdminServerLifecycleTests {
    @Test func runThrowsWhenThePortIsTaken() async throws {
        let providers = AdminProviders(metrics: SidecarMetrics().registry, readiness: { .ready })
        let first = AdminServer(port: 0, providers: providers)
        let running = Task { try await first.run() }
        defer { running.cancel() }
        #expect(await eventually { first.boundPort != nil })
        let port = try #require(first.boundPort)
        let second = AdminServer(port: port, providers: providers)
        let error = await #expect(throws: ListenerBindError.self) { try await second.run() }
        #expect(error?.description == "cannot listen on 127.0.0.1:\(port) (admin.listen): address already in use")
    }
}

/// Everything one raw client connection received, as text.
private final class ReceivedBytes: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let bytes = Mutex("")

    var text: String { bytes.withLock { $0 } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytes.withLock { $0 += String(buffer: buffer) }
    }
}
