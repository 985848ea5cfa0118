import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SidecarCore

/// Collects what reaches the top of a real channel's pipeline, readable from any thread.
public final class SharedRecorder: ChannelInboundHandler, Sendable {
    public typealias InboundIn = ByteBuffer
    private let state = NIOLockedValueBox<(bytes: [UInt8], events: [TLSEvent], errors: [TLSError], closed: Bool)>(
        ([], [], [], false))

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        state.withLockedValue { $0.bytes += buffer.readableBytesView }
        context.fireChannelRead(data)
    }
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSEvent { state.withLockedValue { $0.events.append(event) } }
        context.fireUserInboundEventTriggered(event)
    }
    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? TLSError { state.withLockedValue { $0.errors.append(error) } }
    }
    public func channelInactive(context: ChannelHandlerContext) {
        state.withLockedValue { $0.closed = true }
    }

    public var received: String { String(decoding: state.withLockedValue { $0.bytes }, as: UTF8.self) }
    public var receivedCount: Int { state.withLockedValue { $0.bytes.count } }
    public var receivedBytes: [UInt8] { state.withLockedValue { $0.bytes } }
    public var errors: [TLSError] { state.withLockedValue { $0.errors } }
    public var closed: Bool { state.withLockedValue { $0.closed } }
    public var handshakeInfo: TLSHandshakeInfo? {
        state.withLockedValue { state in
            for case .handshakeCompleted(let info) in state.events { return info }
            return nil
        }
    }
}

/// Echoes every byte back; or answers any request with a fixed HTTP response and closes; or
/// answers each request on a kept-open connection (`closeQuietly`: then closes it without
/// saying so, as a server's idle timeout does).
final class FixtureHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    enum Mode: Sendable {
        case echo
        case http(String)
        case keepAlive(String, closeQuietly: Bool)
    }
    let mode: Mode
    private let head = NIOLockedValueBox<[UInt8]>([])

    init(mode: Mode) { self.mode = mode }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch mode {
        case .echo:
            context.writeAndFlush(data, promise: nil)
        case .http(let body):
            let complete = head.withLockedValue { head -> Bool in
                head += buffer.readableBytesView
                return String(decoding: head, as: UTF8.self).contains("\r\n\r\n")
            }
            guard complete else { return }
            let response = "HTTP/1.1 200 OK\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case .keepAlive(let body, let closeQuietly):
            // Bodiless requests (GET) only: each complete head gets one answer.
            let answers = head.withLockedValue { head -> Int in
                head += buffer.readableBytesView
                var text = String(decoding: head, as: UTF8.self)
                var count = 0
                while let end = text.range(of: "\r\n\r\n") {
                    count += 1
                    text = String(text[end.upperBound...])
                }
                head = Array(text.utf8)
                return count
            }
            for _ in 0..<answers {
                let response = "HTTP/1.1 200 OK\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response))).assumeIsolated().whenComplete { _ in
                    if closeQuietly { context.close(promise: nil) }
                }
            }
        }
    }
}

/// A real TLS server on 127.0.0.1 (port 0) behind our `TLSHandler`, serving a fixture. Takes
/// its context from a `TLSContextStore` per connection, so tests can rotate certificates.
public final class TLSTestServer: Sendable {
    public let store: TLSContextStore
    public let port: Int
    private let channel: Channel
    private let recorders = NIOLockedValueBox<[SharedRecorder]>([])

    public enum Fixture: Sendable {
        case echo
        case http(body: String)
        /// Answers every request of a connection; `closeQuietly` closes it after each answer
        /// without `connection: close`.
        case keepAlive(body: String, closeQuietly: Bool)
    }

    public init(group: EventLoopGroup, store: TLSContextStore, fixture: Fixture) async throws {
        self.store = store
        let recorders = self.recorders
        let mode: FixtureHandler.Mode
        switch fixture {
        case .echo: mode = .echo
        case .http(let body): mode = .http(body)
        case .keepAlive(let body, let closeQuietly): mode = .keepAlive(body, closeQuietly: closeQuietly)
        }
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let recorder = SharedRecorder()
                    recorders.withLockedValue { $0.append(recorder) }
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: store.current))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                    try channel.pipeline.syncOperations.addHandler(FixtureHandler(mode: mode))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    /// One recorder per accepted connection, in accept order.
    public var connections: [SharedRecorder] { recorders.withLockedValue { $0 } }
    public var errorReasons: [TLSFailureReason] { connections.flatMap { $0.errors.map(\.reason) } }

    public func close() async throws {
        try await channel.close()
    }
}

/// Connects our TLS client to `host:port` and returns the channel and its recorder.
public func connectTLSClient(
    group: EventLoopGroup, port: Int, context: TLSContext, serverName: String?,
    peerIdentity: PeerIdentityPolicy? = nil, autoRead: Bool = true
) async throws -> (Channel, SharedRecorder) {
    let recorder = SharedRecorder()
    let channel = try await ClientBootstrap(group: group)
        .channelOption(.autoRead, value: autoRead)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    TLSHandler(context: context, serverName: serverName, peerIdentity: peerIdentity))
                try channel.pipeline.syncOperations.addHandler(recorder)
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    return (channel, recorder)
}
