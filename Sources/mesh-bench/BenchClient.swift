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
    init(group: EventLoopGroup, context: TLSContext, host: String, port: Int, sessionKey: String?) throws {
        self.group = group
        self.context = context
        self.address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        self.sessionKey = sessionKey
    }

    let group: EventLoopGroup
    let context: TLSContext
    /// Resolved once: connecting by host name would run NIO's resolver and Happy Eyeballs per
    /// connection (11 % of the client's CPU in the resumed-handshake profile).
    let address: SocketAddress
    /// The client session-cache key: connections with the same key resume each other's
    /// sessions; nil disables resumption (every handshake is full).
    let sessionKey: String?

    /// One connection, one exchange of `payloadBytes`, on `eventLoop`; completes once the server
    /// has closed. Futures rather than async, so a loop of exchanges stays on its event loop
    /// instead of hopping to a Swift task per connection (the hop would be our harness's cost,
    /// not the TLS layer's).
    func exchange(payloadBytes: UInt64, chunk: ByteBuffer, on eventLoop: EventLoop) -> EventLoopFuture<BenchExchange> {
        let done = eventLoop.makePromise(of: BenchExchange.self)
        let context = self.context
        let sessionKey = self.sessionKey
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        TLSHandler(context: context, sessionKey: sessionKey))
                    try channel.pipeline.syncOperations.addHandler(
                        BenchClientHandler(payloadBytes: payloadBytes, chunk: chunk, done: done))
                }
            }
            .connect(to: address)
            .whenFailure { done.fail($0) }
        return done.futureResult
    }

    /// Back-to-back exchanges of `payloadBytes` on one event loop until `deadline`; returns
    /// (connections, resumed).
    func exchanges(payloadBytes: UInt64, until deadline: NIODeadline, on eventLoop: EventLoop) -> EventLoopFuture<(Int, Int)> {
        eventLoop.flatSubmit {
            let loop = ExchangeLoop(client: self, payloadBytes: payloadBytes, deadline: deadline, eventLoop: eventLoop)
            loop.next()
            return loop.done.futureResult
        }
    }
}

/// The state of `BenchClient.exchanges`, touched only on its event loop.
private final class ExchangeLoop {
    let client: BenchClient
    let payloadBytes: UInt64
    let deadline: NIODeadline
    let eventLoop: EventLoop
    let done: EventLoopPromise<(Int, Int)>
    var connections = 0
    var resumed = 0

    init(client: BenchClient, payloadBytes: UInt64, deadline: NIODeadline, eventLoop: EventLoop) {
        self.client = client
        self.payloadBytes = payloadBytes
        self.deadline = deadline
        self.eventLoop = eventLoop
        self.done = eventLoop.makePromise()
    }

    func next() {
        guard NIODeadline.now() < deadline else {
            done.succeed((connections, resumed))
            return
        }
        client.exchange(payloadBytes: payloadBytes, chunk: ByteBuffer(), on: eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let exchange):
                    self.connections += 1
                    if exchange.resumed { self.resumed += 1 }
                    self.next()
                case .failure(let error):
                    self.done.fail(error)
                }
            }
    }
}
