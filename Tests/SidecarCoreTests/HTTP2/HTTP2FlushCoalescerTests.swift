import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// One flush per connection per read batch: a read on one connection that writes to another
/// (as a downstream read opens streams upstream) flushes that other one once, when the batch ends.
@Suite struct HTTP2FlushCoalescerTests {
    /// Counts the flushes that reach the socket side of a connection.
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var flushes = 0

        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    /// On every read of its connection, writes and flushes `writes` times on `target`.
    final class WritesElsewhere: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let target: Channel
        let writes: Int

        init(target: Channel, writes: Int) {
            self.target = target
            self.writes = writes
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            for _ in 0..<writes { target.writeAndFlush(ByteBuffer(string: "frame"), promise: nil) }
        }
    }

    let loop = EmbeddedEventLoop()
    let batch = HTTP2ReadBatch()
    let reader: EmbeddedChannel
    let upstream: EmbeddedChannel
    let counter = FlushCounter()

    init() throws {
        upstream = EmbeddedChannel(loop: loop)
        try upstream.pipeline.syncOperations.addHandler(counter)
        try upstream.pipeline.syncOperations.addHandler(HTTP2FlushCoalescer(batch: batch))
        reader = EmbeddedChannel(loop: loop)
        try reader.pipeline.syncOperations.addHandler(HTTP2FlushCoalescer(batch: batch))
        try reader.pipeline.syncOperations.addHandler(WritesElsewhere(target: upstream, writes: 3))
    }

    /// A read on `reader` with no read completion yet (`writeInbound` would complete it).
    func read() {
        reader.pipeline.syncOperations.fireChannelRead(NIOAny(ByteBuffer(string: "request")))
    }

    func written() throws -> Int {
        var count = 0
        while try upstream.readOutbound(as: ByteBuffer.self) != nil { count += 1 }
        return count
    }

    @Test func flushesOutsideAReadBatchPassAtOnce() throws {
        upstream.writeAndFlush(ByteBuffer(string: "frame"), promise: nil)
        #expect(counter.flushes == 1)
        #expect(try written() == 1)
    }

    @Test func writesDuringAnotherConnectionsReadAreFlushedOnceWhenItsBatchEnds() throws {
        read()
        read()
        #expect(counter.flushes == 0, "held while the batch is open")
        #expect(try written() == 0)
        reader.pipeline.syncOperations.fireChannelReadComplete()
        #expect(counter.flushes == 1, "six stream flushes, one connection flush")
        #expect(try written() == 6)
        #expect(!batch.isReading)
    }

    @Test func aConnectionClosingMidBatchEndsItsRead() throws {
        read()
        #expect(counter.flushes == 0)
        reader.pipeline.syncOperations.fireChannelInactive()
        #expect(counter.flushes == 1, "the held flush goes out when the reader's batch can no longer end normally")
        #expect(!batch.isReading)
        upstream.writeAndFlush(ByteBuffer(string: "frame"), promise: nil)
        #expect(counter.flushes == 2, "and later flushes pass at once")
    }
}
