import NIOCore
import NIOPosix
import SidecarCore

/// What one bench connection observed.
struct BenchExchange: Sendable {
    var resumed: Bool
    /// From the handshake's completion to the server's answer (the payload's transfer time).
    var transferNanoseconds: UInt64
}

/// Client side of `BenchProtocol` for one connection: after the handshake, sends the header
/// and `payloadBytes` bytes (one shared chunk, re-sent while the channel is writable), waits
/// for the answer, then for the server to close. Runs on the channel's event loop.
final class BenchClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let chunk: ByteBuffer
    private var remaining: UInt64
    private let done: EventLoopPromise<BenchExchange>
    private var resumed = false
    private var started: NIODeadline?
    private var answered: BenchExchange?

    init(payloadBytes: UInt64, chunk: ByteBuffer, done: EventLoopPromise<BenchExchange>) {
        self.remaining = payloadBytes
        self.chunk = chunk
        self.done = done
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            resumed = info.resumed
            started = .now()
            var header = context.channel.allocator.buffer(capacity: BenchProtocol.headerSize)
            header.writeInteger(remaining)
            context.write(wrapOutboundOut(header), promise: nil)
            sendPayload(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { sendPayload(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func sendPayload(context: ChannelHandlerContext) {
        while remaining > 0, context.channel.isWritable {
            let size = Int(min(remaining, UInt64(chunk.readableBytes)))
            context.write(wrapOutboundOut(chunk.getSlice(at: chunk.readerIndex, length: size)!), promise: nil)
            remaining -= UInt64(size)
        }
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard answered == nil, let started else { return }
        answered = BenchExchange(
            resumed: resumed, transferNanoseconds: UInt64((NIODeadline.now() - started).nanoseconds))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let answered {
            done.succeed(answered)
        } else {
            done.fail(BenchClientError("connection closed before the server answered"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        done.fail(error)
        context.close(promise: nil)
    }
}

struct BenchClientError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Opens bench connections to one server with one shared client context.
struct BenchClient: Sendable {
    let group: EventLoopGroup
    let context: TLSContext
    let host: String
    let port: Int
    /// The client session-cache key: connections with the same key resume each other's
    /// sessions; nil disables resumption (every handshake is full).
    let sessionKey: String?

    /// One connection, one exchange of `payloadBytes`; returns once the server has closed.
    func exchange(payloadBytes: UInt64, chunk: ByteBuffer) async throws -> BenchExchange {
        let done = group.next().makePromise(of: BenchExchange.self)
        let context = self.context
        let sessionKey = self.sessionKey
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        TLSHandler(context: context, sessionKey: sessionKey))
                    try channel.pipeline.syncOperations.addHandler(
                        BenchClientHandler(payloadBytes: payloadBytes, chunk: chunk, done: done))
                }
            }
            .connect(host: host, port: port).get()
        do {
            return try await done.futureResult.get()
        } catch {
            try? await channel.close()
            throw error
        }
    }
}
