import NIOCore
import NIOHPACK
import NIOHTTP2

/// One caller's HTTP/2 connection with its streams as plain exchanges: `NIOHTTP2Handler` in
/// frame mode (no stream multiplexer, no child channel per stream) and this handler after it,
/// carrying out the decisions of `HTTP2DownstreamConnectionStateMachine`: a HEADERS frame of a
/// new stream makes its `HTTP2StreamExchange` (or is refused over the limit), every frame goes
/// to its stream's exchange by id, and what the exchanges answer goes out with their ids;
/// WINDOW_UPDATEs (NIOHTTP2 sends none in frame mode) given back as the exchanges pass the bytes
/// on; a response stream that the caller does not read stops its upstream's reads. RST_STREAM
/// either way ends the exchange. Drain (`ChannelShouldQuiesceEvent`, or no stream for
/// `idleTimeout`): GOAWAY and PING, at the PING's ack GOAWAY with the last stream id, close once
/// those streams are closed, or after `drainTimeout` whatever is left. (NIOHTTP2's
/// `NIOHTTP2ServerConnectionManagementHandler` did this before, a set of its own of the stream
/// ids and six cast events per request; the table here already knows the streams.)
///
/// The exchanges' deadlines run on the connection's one `HTTP2StreamClock`. Their writes and
/// flushes inside this connection's read batch are flushed once at its end. Event-loop bound.
final class HTTP2DownstreamConnection: ChannelDuplexHandler, HTTP2Downstream {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let side: HTTP2StreamExchange.Side
    let loop: LoopContext
    let accessLog: AccessLog
    let defaultDestination: String?
    let clock: HTTP2StreamClock
    let idleTimeout: TimeAmount
    let drainTimeout: TimeAmount
    private(set) var machine: HTTP2DownstreamConnectionStateMachine<HTTP2StreamExchange>
    /// The one idle check of the connection (re-armed when it fires), then the drain's deadline.
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private var allocator = ByteBufferAllocator()
    /// Exchanges that got frames in the current read batch (told `downstreamReadComplete` at its end).
    private var touched: [HTTP2StreamExchange] = []
    private var notifying: [HTTP2StreamExchange] = []
    private var reading = false
    private var needsFlush = false

    init(
        side: HTTP2StreamExchange.Side, loop: LoopContext, accessLog: AccessLog, eventLoop: EventLoop,
        defaultDestination: String? = nil, maxStreams: Int = HTTP2Settings.maxDownstreamStreams, idleTimeout: TimeAmount = .hours(1),
        drainTimeout: TimeAmount = .seconds(30)
    ) {
        self.side = side
        self.loop = loop
        self.accessLog = accessLog
        self.defaultDestination = defaultDestination
        self.idleTimeout = idleTimeout
        self.drainTimeout = drainTimeout
        self.clock = HTTP2StreamClock(eventLoop: eventLoop)
        self.machine = .init(
            maxStreams: maxStreams, streamWindow: HTTP2Settings.streamWindow, connectionWindow: HTTP2Settings.connectionWindow,
            now: eventLoop.now)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        checkIdle(at: context.eventLoop.now + idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        let frame = unwrapInboundIn(data)
        if let increment = machine.receivedFrame() { writeWindowUpdate(.rootStream, increment) }
        let id = frame.streamID
        switch frame.payload {
        case .headers(let headers):
            let decision = machine.receivedHeaders(
                id, endStream: headers.endStream, check: { HTTP2HeaderValidation.check(headers.headers, as: $0) },
                make: { makeExchange(id, context: context) })
            switch decision {
            case .opened(let exchange), .existing(let exchange):
                touch(exchange)
                exchange.received(frame.payload)
            case .refused:
                writeReset(id, .refusedStream)
            case .malformed:
                writeReset(id, .protocolError)
            }
        case .data(let data):
            guard case .byteBuffer(let buffer) = data.data,
                let receipt = machine.receivedData(id, bytes: buffer.readableBytes, endStream: data.endStream)
            else { return }
            switch receipt {
            case .deliver(let exchange):
                touch(exchange)
                exchange.received(frame.payload)
            case .malformed:
                writeReset(id, .protocolError)
            }
        case .rstStream:
            guard let exchange = machine.stream(id) else { return }
            exchange.received(frame.payload)
        case .ping(let data, ack: true):
            guard let last = machine.receivedPingAck(data) else { return }
            context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: last, errorCode: .noError, opaqueData: nil))), promise: nil)
            flush()
            closeIfDone()
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if !touched.isEmpty {
            swap(&touched, &notifying)
            for exchange in notifying {
                exchange.touched = false
                exchange.downstreamReadComplete()
            }
            notifying.removeAll(keepingCapacity: true)
        }
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The type first: a failed `as?` of an `Any` costs a few hundred instructions, and every
        // stream brings events of other types (NIOHTTP2StreamCreatedEvent) through here.
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self), let event = event as? NIOHTTP2WindowUpdatedEvent {
            guard let window = event.inboundWindowSize else { return }
            let id = event.streamID
            if id == .rootStream {
                if let increment = machine.connectionWindowChanged(inbound: window) { writeWindowUpdate(id, increment) }
            } else if let exchange = machine.stream(id),
                let increment = machine.streamWindowChanged(id, inbound: window, paused: !exchange.wantsDownstreamFrames)
            {
                writeWindowUpdate(id, increment)
            }
            return
        }
        if type == ObjectIdentifier(StreamClosedEvent.self), let event = event as? StreamClosedEvent {
            // Reset either way: an exchange not yet ended was cut off. A clean close (no reason)
            // comes while the exchange writes its last frame, and it ends by itself.
            if let exchange = machine.streamClosed(event.streamID, now: context.eventLoop.now), event.reason != nil {
                exchange.downstreamClosed()
            }
            closeIfDone()
            return
        }
        // Stream events end here: nothing after this handler reads them.
        if type == ObjectIdentifier(NIOHTTP2StreamCreatedEvent.self) { return }
        if type == ObjectIdentifier(ChannelShouldQuiesceEvent.self) { beginDrain() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        for entry in machine.streams.values where entry.flow.writable {
            entry.stream.downstreamWritabilityChanged(writable)
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOHTTP2Errors.StreamError || error is NIOHTTP2Errors.NoSuchStream {
            // The caller broke the protocol on one stream (NIOHTTP2 resets it: its
            // StreamClosedEvent ends the exchange), or a frame of ours met a stream already
            // closed (its exchange is ending): the connection is fine.
            return
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        for exchange in touched { exchange.touched = false }
        touched.removeAll()
        for exchange in machine.connectionClosed() { exchange.downstreamClosed() }
        context.fireChannelInactive()
    }

    // MARK: HTTP2Downstream (called by the exchanges)

    func write(_ payload: HTTP2Frame.FramePayload, on stream: HTTP2StreamID, checked: Bool) {
        guard let context else { return }
        if !checked, case .headers(let headers) = payload, !Self.isValidResponseBlock(headers.headers) {
            // Not sent: a block NIOHTTP2 would have refused (every received block was checked, so
            // only one the sidecar made wrongly gets here). The caller's stream is reset, and its
            // exchange ends when NIOHTTP2 closes it.
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .rstStream(.internalError))), promise: nil)
            return
        }
        let frame = wrapOutboundOut(HTTP2Frame(streamID: stream, payload: payload))
        // A stream's last frame needs no count: its upstream has nothing more to hold back.
        guard case .data(let data) = payload, !data.endStream, case .byteBuffer(let buffer) = data.data,
            buffer.readableBytes > 0
        else {
            context.write(frame, promise: nil)
            return
        }
        // Counted until it reaches the wire: a stream whose caller's window is shut stops its upstream.
        let bytes = buffer.readableBytes
        _ = machine.wroteData(stream, bytes: bytes)
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenComplete { [weak self] _ in
            self?.dataLeft(stream, bytes: bytes)
        }
        context.write(frame, promise: promise)
    }

    func flush() {
        if reading {
            needsFlush = true
        } else {
            context?.flush()
        }
    }

    var checksRequestBlocks: Bool { true }

    func isWritable(_ stream: HTTP2StreamID) -> Bool {
        guard let context, context.channel.isWritable else { return false }
        return machine.isWritable(stream)
    }

    func readsResumed(_ stream: HTTP2StreamID) {
        guard let increment = machine.readsResumed(stream) else { return }
        writeWindowUpdate(stream, increment)
        flush()
    }

    // MARK: Drain and idle

    /// GOAWAY (the largest id: the caller may have streams on the way) and the drain's PING; its
    /// ack brings the second GOAWAY. Whatever is still open after `drainTimeout` is closed.
    private func beginDrain() {
        guard let context, machine.beginDrain() else { return }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil))), promise: nil)
        context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2DownstreamConnectionStateMachine<HTTP2StreamExchange>.drainPing, ack: false))), promise: nil)
        flush()
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: drainTimeout) { [weak self] in
            self?.context?.close(promise: nil)
        }
    }

    /// Closes once the second GOAWAY went out and its streams are closed, on the next loop tick:
    /// a stream's last frame (whose write closed it) is flushed first.
    private func closeIfDone() {
        guard machine.shouldClose, let context else { return }
        context.eventLoop.assumeIsolated().execute { [weak self] in
            self?.context?.close(promise: nil)
        }
    }

    private func checkIdle(at deadline: NIODeadline) {
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self, let context = self.context else { return }
            self.timer = nil
            switch self.machine.idleCheck(now: context.eventLoop.now, idleTimeout: self.idleTimeout) {
            case .drain: self.beginDrain()
            case .checkAgain(let next): self.checkIdle(at: next)
            case .stop: break
            }
        }
    }

    // MARK: Helpers

    private func makeExchange(_ id: HTTP2StreamID, context: ChannelHandlerContext) -> HTTP2StreamExchange {
        HTTP2StreamExchange(
            streamID: id, downstream: self, eventLoop: context.eventLoop, allocator: allocator, side: side, loop: loop,
            accessLog: accessLog, defaultDestination: defaultDestination, clock: clock)
    }

    /// A response's head (`:status` first: the sidecar relays no 1xx head) or its trailers.
    private static func isValidResponseBlock(_ headers: HPACKHeaders) -> Bool {
        HTTP2HeaderValidation.isValid(headers, as: headers.first?.name == ":status" ? .response : .trailers)
    }

    private func dataLeft(_ stream: HTTP2StreamID, bytes: Int) {
        guard machine.dataLeft(stream, bytes: bytes) == true, let exchange = machine.stream(stream) else { return }
        exchange.downstreamWritabilityChanged(context?.channel.isWritable ?? false)
    }

    private func touch(_ exchange: HTTP2StreamExchange) {
        guard !exchange.touched else { return }
        exchange.touched = true
        touched.append(exchange)
    }

    private func writeReset(_ id: HTTP2StreamID, _ code: HTTP2ErrorCode) {
        context?.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(code))), promise: nil)
        flush()
    }

    private func writeWindowUpdate(_ id: HTTP2StreamID, _ increment: Int) {
        context?.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        flush()
    }
}
