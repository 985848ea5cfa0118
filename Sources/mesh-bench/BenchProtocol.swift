import NIOCore

/// The wire protocol between the bench client and `mesh-bench tls-server`, spoken inside TLS:
/// one request per connection. The client sends an 8-byte big-endian length N and then N bytes;
/// the server discards them, answers one byte and closes (close_notify, then FIN), like an
/// HTTP/1.0 exchange. N = 0 makes a handshake benchmark with one round trip, which also lets
/// the client receive the server's session tickets before the connection ends (as
/// `openssl s_time -www` does).
enum BenchProtocol {
    static let headerSize = 8
    static let ack: UInt8 = 0x2A
}

/// Server side of `BenchProtocol`: counts and drops the payload, then acknowledges and closes.
/// Runs on the channel's event loop; never copies the payload.
final class SinkServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var header = ByteBuffer()
    private var remaining: UInt64?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        while buffer.readableBytes > 0 {
            if let left = remaining {
                let take = Int(min(UInt64(buffer.readableBytes), left))
                buffer.moveReaderIndex(forwardBy: take)
                remaining = left - UInt64(take)
            } else {
                var slice = buffer.readSlice(length: min(buffer.readableBytes, BenchProtocol.headerSize - header.readableBytes))!
                header.writeBuffer(&slice)
                if header.readableBytes == BenchProtocol.headerSize {
                    remaining = header.readInteger(as: UInt64.self)
                }
            }
            if remaining == 0 {
                remaining = nil
                answerAndClose(context: context)
                return
            }
        }
    }

    private func answerAndClose(context: ChannelHandlerContext) {
        var answer = context.channel.allocator.buffer(capacity: 1)
        answer.writeInteger(BenchProtocol.ack)
        context.writeAndFlush(wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
