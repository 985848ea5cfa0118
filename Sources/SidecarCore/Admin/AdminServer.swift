import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The sidecar's admin HTTP/1.1 server (default `127.0.0.1:15000`): `/metrics`, `/ready`,
/// `/live`, `/config`, `/clusters`, routed by `AdminRouter`.
///
/// A `Service`: `run()` binds (port 0 picks a free port, read back from `boundAddress`; a
/// failure is a `ListenerBindError` naming the address and `configKey`), serves until graceful
/// shutdown or cancellation, then closes the listener and every open admin connection before
/// returning.
public final class AdminServer: Service, Sendable {
    public let host: String
    public let port: Int
    /// Where the address was configured, named when it cannot be bound.
    public let configKey: String
    private let router: AdminRouter
    private let group: any EventLoopGroup
    private let state = Mutex<(bound: SocketAddress?, connections: [ObjectIdentifier: any Channel])>((nil, [:]))

    public init(
        host: String = "127.0.0.1", port: Int = 15000, configKey: String = "admin.listen", providers: AdminProviders,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.configKey = configKey
        router = AdminRouter(providers: providers)
        self.group = group
    }

    /// The address the listener is bound to; nil until `run()` has bound it and after it ends.
    public var boundAddress: SocketAddress? { state.withLock { $0.bound } }

    /// The bound port (useful with port 0); nil while not listening.
    public var boundPort: Int? { boundAddress?.port }

    public func run() async throws {
        let router = self.router
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHTTPHandler(router: router))
                }
            }
        let address = HostPort(host: host, port: port)
        let server = try await ListenerBindError.binding(address, key: configKey) {
            try await bootstrap.bind(host: address.host, port: address.port).get()
        }
        state.withLock { $0.bound = server.localAddress }
        defer { state.withLock { $0.bound = nil } }

        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                try? await server.closeFuture.get()
            } onCancel: {
                server.close(promise: nil)
            }
        } onGracefulShutdown: {
            server.close(promise: nil)
        }
        try? await server.closeFuture.get()
        let open = state.withLock { Array($0.connections.values) }
        for connection in open {
            try? await connection.close()
        }
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock { $0.connections[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }
}
