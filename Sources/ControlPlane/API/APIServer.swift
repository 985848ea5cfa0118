import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import SidecarCore

/// The HTTPS listener: our TLS (server certificate from the mesh CA, client certificates
/// optional so the CLI can use its bearer token) under NIO's HTTP/1.1 server pipeline and
/// `APIServerHandler`. A lifecycle `Service`: it stops listening on graceful shutdown.
public final class APIServer: Service, Sendable {
    public let localAddress: SocketAddress
    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
        self.localAddress = channel.localAddress!
    }

    /// Builds the TLS context (off the event loop) and binds `host:port` (port 0: any free port).
    public static func start(
        host: String, port: Int, router: APIRouter, authority: CertificateAuthority,
        maxBodySize: Int = 1 << 20, idleTimeout: TimeAmount = .seconds(60), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> APIServer {
        let credentials = try authority.makeServerCredentials(listenHost: host)
        let configuration = TLSConfiguration(
            certificateChain: .pem(credentials.certificatePEM, name: "control-plane server certificate"),
            privateKey: .pem(credentials.keyPEM, name: "control-plane server key"),
            trustRoots: .pem(authority.rootPEM, name: "mesh CA"),
            certificateVerification: .optional,
            peerIdentity: .trustDomain(authority.trustDomain))
        let context = try TLSContext(configuration: configuration, role: .server)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try sync.addHandler(TLSHandler(context: context))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try sync.addHandler(APIServerHandler(router: router, maxBodySize: maxBodySize))
                }
            }
            .bind(host: host, port: port).get()
        return APIServer(channel: channel)
    }

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
