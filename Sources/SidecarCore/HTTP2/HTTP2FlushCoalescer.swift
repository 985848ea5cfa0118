import NIOCore

/// One flush per HTTP/2 connection per read batch. A read on one connection writes to many
/// streams of others (a downstream batch of 100 requests opens 100 streams on one upstream
/// connection; an upstream batch of responses answers streams of the downstream ones), and
/// each stream flushes its own frames; NIOHTTP2 coalesces the flushes of the connection that is
/// reading, not of the others. This handler, just under `NIOHTTP2Handler` on every HTTP/2
/// connection of a loop, holds those flushes while any connection of the loop is inside a read
/// batch (`channelRead` … `channelReadComplete`) and lets each through once when the last batch
/// ends: one TLS write and one syscall per connection per batch instead of one per stream.
///
/// Outside a read batch (a timer, a connect completing) a flush passes at once. Writes are
/// never held: only the flush that sends them. Event-loop bound, like everything per loop.
final class HTTP2FlushCoalescer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let batch: HTTP2ReadBatch
    private var context: ChannelHandlerContext?
    /// This connection's read batch is open (counted in `batch`).
    private var reading = false
    /// A flush is held for the end of the loop's batch.
    fileprivate var flushHeld = false

    init(batch: HTTP2ReadBatch) {
        self.batch = batch
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        endRead()
        if flushHeld {
            flushHeld = false
            context.flush()
        }
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !reading {
            reading = true
            batch.readStarted()
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        endRead()
    }

    func channelInactive(context: ChannelHandlerContext) {
        context.fireChannelInactive()
        endRead()
    }

    func flush(context: ChannelHandlerContext) {
        guard batch.isReading else {
            context.flush()
            return
        }
        if !flushHeld {
            flushHeld = true
            batch.hold(self)
        }
    }

    fileprivate func releaseFlush() {
        guard flushHeld else { return }
        flushHeld = false
        context?.flush()
    }

    private func endRead() {
        guard reading else { return }
        reading = false
        batch.readEnded()
    }
}

/// The read batches open on one event loop's HTTP/2 connections, and the flushes held until
/// the last of them ends (`HTTP2FlushCoalescer`). One per loop, on that loop only.
final class HTTP2ReadBatch {
    private var openReads = 0
    private var held: [HTTP2FlushCoalescer] = []
    /// Reused between batches, so releasing allocates nothing.
    private var releasing: [HTTP2FlushCoalescer] = []

    var isReading: Bool { openReads > 0 }

    func readStarted() {
        openReads += 1
    }

    func readEnded() {
        openReads -= 1
        guard openReads == 0 else { return }
        // A released flush may hold another (a write that makes a connection writable again);
        // loop until none is left.
        while !held.isEmpty {
            swap(&held, &releasing)
            for coalescer in releasing { coalescer.releaseFlush() }
            releasing.removeAll(keepingCapacity: true)
        }
    }

    fileprivate func hold(_ coalescer: HTTP2FlushCoalescer) {
        held.append(coalescer)
    }
}
