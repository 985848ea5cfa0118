import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import SidecarCore

/// The HTTPS listener: our TLS (server certificate from the mesh CA, client certificates
/// optional so the CLI can use its bearer token) under NIO's HTTP/1.1 server pipeline and
/// `APIServerHandler`. A lifecycle `Service`: it stops listening on graceful shutdown.
///
/// What a client can make it hold is bounded by `Limits`: connections over `maxConnections`
/// are closed as they are accepted, a body is kept only once its head was admitted, at most
/// `maxBodySize` per request and `maxBufferedBodyBytes` for all connections together, and for
/// at most `bodyTimeout`.
public final class APIServer: Service, Sendable {
    /// Caps on what clients can make the server hold.
    public struct Limits: Sendable {
        /// Open connections; one more is closed as soon as it is accepted.
        public var maxConnections = 1024
        /// One request's body; more gets 413.
        public var maxBodySize = 1 << 20
        /// Bodies held in memory by all connections together; a body that does not fit gets 503.
        public var maxBufferedBodyBytes = 64 << 20
        /// From a request's head to the end of its body; later gets 408.
        public var bodyTimeout: TimeAmount = .seconds(15)
        /// A connection that sends nothing for this long is closed (unless it waits for an answer).
        public var idleTimeout: TimeAmount = .seconds(60)
        /// After an answer sent before the whole request came (401, 413, 408, ...), how long the
        /// rest is read and dropped before the connection closes anyway.
        public var drainTimeout: TimeAmount = .seconds(2)

        public init() {}
    }

    public let localAddress: SocketAddress
    private let channel: any Channel
    private let connections: SharedAllowance
    private let bodyBudget: SharedAllowance

    private init(channel: any Channel, connections: SharedAllowance, bodyBudget: SharedAllowance) {
        self.channel = channel
        self.localAddress = channel.localAddress!
        self.connections = connections
        self.bodyBudget = bodyBudget
    }

    /// The connection cap was reached: the accepted connection is closed at once.
    struct ConnectionLimitReached: Error {}

    /// Builds the TLS context (off the event loop) and binds `host:port` (port 0: any free port);
    /// a bind failure is a `ListenerBindError` naming the address and `listenKey`, the setting
    /// it came from.
    public static func start(
        host: String, port: Int, listenKey: String = "--listen", router: APIRouter, authority: CertificateAuthority,
        limits: Limits = Limits(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> APIServer {
        let credentials = try authority.makeServerCredentials(listenHost: host)
        let configuration = TLSConfiguration(
            certificateChain: .pem(credentials.certificatePEM, name: "control-plane server certificate"),
            privateKey: .pem(credentials.keyPEM, name: "control-plane server key"),
            trustRoots: .pem(authority.rootPEM, name: "mesh CA"),
            certificateVerification: .optional,
            peerIdentity: .trustDomain(authority.trustDomain))
        let context = try TLSContext(configuration: configuration, role: .server)
        let connections = SharedAllowance(capacity: limits.maxConnections)
        let bodyBudget = SharedAllowance(capacity: limits.maxBufferedBodyBytes)
        let handlerConfiguration = APIServerHandler.Configuration(
            limits: .init(maxBodySize: limits.maxBodySize, maxDrainBytes: 8 * limits.maxBodySize),
            bodyTimeout: limits.bodyTimeout, drainTimeout: limits.drainTimeout)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                // Before any TLS work: a connection over the cap costs an accept and a close.
                guard connections.take(1) else { return channel.eventLoop.makeFailedFuture(ConnectionLimitReached()) }
                channel.closeFuture.whenComplete { _ in connections.give(1) }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: limits.idleTimeout))
                    try sync.addHandler(TLSHandler(context: context))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try sync.addHandler(
                        APIServerHandler(router: router, configuration: handlerConfiguration, bodyBudget: bodyBudget))
                }
            }
        let channel = try await ListenerBindError.binding(HostPort(host: host, port: port), key: listenKey) {
            try await bootstrap.bind(host: host, port: port).get()
        }
        return APIServer(channel: channel, connections: connections, bodyBudget: bodyBudget)
    }

    /// Connections open now.
    public var openConnections: Int { connections.inUse }

    /// Bytes of request bodies held now, all connections together.
    public var bufferedBodyBytes: Int { bodyBudget.inUse }

    public var port: Int { localAddress.port ?? 0 }

    public func close() async throws {
        try await channel.close()
    }

    /// Runs until the listener closes; graceful shutdown closes it.
    public func run() async throws {
        let channel = channel
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}
