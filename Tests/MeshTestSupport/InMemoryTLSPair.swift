import NIOCore
import NIOEmbedded
import SidecarCore

/// Records what reaches the end of a pipeline: plaintext, user events, errors, closure.
public final class EventRecorder: ChannelInboundHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer

    public private(set) var received = ByteBuffer()
    public private(set) var events: [TLSEvent] = []
    public private(set) var errors: [Error] = []
    public private(set) var inactive = false

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.writeBuffer(&buffer)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSEvent { events.append(event) }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        errors.append(error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        inactive = true
    }

    public var tlsErrors: [TLSError] { errors.compactMap { $0 as? TLSError } }
    public var handshakeInfo: TLSHandshakeInfo? {
        for case .handshakeCompleted(let info) in events { return info }
        return nil
    }
    public var receivedString: String { String(buffer: received) }
}

/// A client and a server `EmbeddedChannel`, each with a `TLSHandler`, joined by pumping
/// ciphertext between them until both are quiet (the swift-nio-ssl test shape).
public final class InMemoryTLSPair {
    public let client: EmbeddedChannel
    public let server: EmbeddedChannel
    public let clientRecorder = EventRecorder()
    public let serverRecorder = EventRecorder()

    public init(
        clientContext: TLSContext,
        serverContext: TLSContext,
        serverName: String? = "payments",
        clientPeerIdentity: PeerIdentityPolicy? = nil,
        sessionKey: String? = nil
    ) throws {
        client = EmbeddedChannel()
        server = EmbeddedChannel()
        try client.pipeline.syncOperations.addHandler(
            TLSHandler(context: clientContext, serverName: serverName, peerIdentity: clientPeerIdentity, sessionKey: sessionKey))
        try client.pipeline.syncOperations.addHandler(clientRecorder)
        try server.pipeline.syncOperations.addHandler(TLSHandler(context: serverContext))
        try server.pipeline.syncOperations.addHandler(serverRecorder)
    }

    /// Activates both ends (the client starts the handshake) and pumps until quiet.
    public func connect() throws {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        try server.connect(to: address).wait()
        try client.connect(to: address).wait()
        try pump()
    }

    /// Moves ciphertext both ways until neither side has anything to send.
    public func pump() throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                moved = true
                if server.isActive { try server.writeInbound(bytes) }
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                moved = true
                if client.isActive { try client.writeInbound(bytes) }
            }
        }
    }

    /// Drops both channels without checking for leftovers.
    public func tearDown() {
        _ = try? client.finish(acceptAlreadyClosed: true)
        _ = try? server.finish(acceptAlreadyClosed: true)
    }
}
