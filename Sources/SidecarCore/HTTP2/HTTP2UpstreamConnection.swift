import NIOCore
import NIOHPACK
import NIOHTTP2

/// One upstream HTTP/2 connection (mTLS `h2` to a peer sidecar, h2c to the app) with its streams
/// as plain objects: `NIOHTTP2Handler` in frame mode (no stream multiplexer, no child channel per
/// stream) and this handler after it, carrying out the decisions of
/// `HTTP2UpstreamConnectionStateMachine`: frames in, routed to the stream's exchange by stream
/// id; frames out, written with the stream's id; WINDOW_UPDATEs (NIOHTTP2 sends none in frame
/// mode); RST_STREAM, GOAWAY and REFUSED_STREAM turned into the stream's failure, refused ones
/// safe to retry. Event-loop bound, like its pool.
final class HTTP2UpstreamConnection: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let key: ConnectionPool.Key
    weak var pool: HTTP2ConnectionPool?
    private(set) var machine: HTTP2UpstreamConnectionStateMachine<HTTP2UpstreamStream>
    private var context: ChannelHandlerContext?
    /// Streams handed out before the connection was up: started once it is, failed if it fails.
    private var waiting: [(promise: EventLoopPromise<HTTP2UpstreamStream>, stream: HTTP2UpstreamStream)] = []
    /// Streams that got frames in the current read batch (told `upstreamReadComplete` at its end).
    private var touched: [HTTP2UpstreamStream] = []
    private var notifying: [HTTP2UpstreamStream] = []
    private var reading = false
    private var needsFlush = false
    /// Why it failed, when TLS refused the peer (the streams fail with `tls-failed`).
    private var tlsError: TLSError?

    init(key: ConnectionPool.Key, pool: HTTP2ConnectionPool?) {
        self.key = key
        self.pool = pool
        self.machine = .init(
            maxStreams: HTTP2ConnectionPool.maxStreamsPerConnection, streamWindow: HTTP2Settings.streamWindow,
            connectionWindow: HTTP2Settings.connectionWindow)
    }

    var hasRoom: Bool { machine.hasRoom }

    /// Up (its preface sent) and with room for a stream now.
    var isReadyWithRoom: Bool { machine.state == .ready && machine.hasRoom }

    /// A stream for `owner` on a connection that `isReadyWithRoom`, counted against the limit.
    func reserveStreamNow(owner: any HTTP2UpstreamOwner) -> HTTP2UpstreamStream {
        machine.reserve()
        return HTTP2UpstreamStream(owner: owner, connection: self)
    }

    /// A stream for `owner`, counted against the limit now; it starts (takes an id) when it sends
    /// its head. Completes at once when the connection is up, else when it comes up.
    func reserveStream(owner: any HTTP2UpstreamOwner, on eventLoop: EventLoop) -> EventLoopFuture<HTTP2UpstreamStream> {
        machine.reserve()
        let stream = HTTP2UpstreamStream(owner: owner, connection: self)
        if machine.state == .connecting {
            let promise = eventLoop.makePromise(of: HTTP2UpstreamStream.self)
            waiting.append((promise, stream))
            return promise.futureResult
        }
        return eventLoop.assumeIsolated().makeSucceededFuture(stream)
    }

    /// The connect failed: the streams waiting for it fail with `error`.
    func connectFailed(_ error: Error) {
        machine.stopTakingStreams()
        let waiting = self.waiting
        self.waiting = []
        for (promise, stream) in waiting {
            stream.state = .done
            machine.unreserve()
            promise.fail(error)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { becameActive(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        becameActive(context: context)
        context.fireChannelActive()
    }

    /// After `NIOHTTP2Handler` sent the preface: the connection window opened, the waiting streams go.
    private func becameActive(context: ChannelHandlerContext) {
        guard machine.state == .connecting else { return }
        if let increment = machine.connected() {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        }
        let waiting = self.waiting
        self.waiting = []
        for (promise, stream) in waiting { promise.assumeIsolated().succeed(stream) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        switch frame.payload {
        case .headers(let headers):
            let informational = !headers.endStream && Self.isInformational(headers.headers)
            guard
                let (stream, receive) = machine.receivedHeaders(
                    id, endStream: headers.endStream, informational: informational,
                    check: { HTTP2HeaderValidation.check(headers.headers, as: $0) })
            else { return }
            switch receive {
            case .informational:
                return
            case .malformed:
                malformed(stream, id)
            case .head(let ended, let resetAfter):
                if ended { stream.state = .done }
                touch(stream)
                stream.owner?.upstreamHeaders(headers.headers, endStream: ended)
                if resetAfter { writeReset(id, .cancel) }
            case .trailers(let resetAfter):
                stream.state = .done
                touch(stream)
                stream.owner?.upstreamTrailers(headers.headers)
                if resetAfter { writeReset(id, .cancel) }
            case .data:
                break
            }
        case .data(let payload):
            guard case .byteBuffer(let buffer) = payload.data,
                let (stream, receive) = machine.receivedData(id, bytes: buffer.readableBytes, endStream: payload.endStream)
            else { return }
            guard case .data(let ended, let resetAfter) = receive else {
                if receive == .malformed { malformed(stream, id) }
                break
            }
            if ended { stream.state = .done }
            touch(stream)
            stream.owner?.upstreamData(buffer, endStream: ended)
            if resetAfter { writeReset(id, .cancel) }
        case .rstStream(let code):
            if let (stream, failure) = machine.streamClosed(id, code: code) { fail(stream, failure) }
        case .goAway(let lastStreamID, _, _):
            pool?.remove(self)
            for stream in machine.receivedGoAway(lastStreamID: lastStreamID) { fail(stream, .refused) }
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .maxConcurrentStreams {
                machine.peerMaxConcurrentStreams(setting.value)
            }
        default:
            break
        }
        closeIfDone()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        guard !touched.isEmpty else { return }
        swap(&touched, &notifying)
        for stream in notifying {
            stream.touched = false
            stream.owner?.upstreamReadComplete()
        }
        notifying.removeAll(keepingCapacity: true)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The type first, as `HTTP2DownstreamConnection` does: a failed `as?` costs more.
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self), let event = event as? NIOHTTP2WindowUpdatedEvent {
            guard let window = event.inboundWindowSize else { return }
            let increment =
                event.streamID == .rootStream
                ? machine.connectionWindowChanged(inbound: window) : machine.streamWindowChanged(event.streamID, inbound: window)
            if let increment { writeWindowUpdate(event.streamID, increment) }
        } else if type == ObjectIdentifier(StreamClosedEvent.self), let event = event as? StreamClosedEvent {
            // Closed without an end we saw: NIOHTTP2 reset it (a stream error), or the peer did.
            if let (stream, failure) = machine.streamClosed(event.streamID, code: event.reason) { fail(stream, failure) }
            closeIfDone()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        for entry in machine.streams.values where entry.flow.writable {
            entry.stream.owner?.upstreamWritabilityChanged(writable)
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TLSError {
            tlsError = tls
            context.close(promise: nil)
            return
        }
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            // A frame of ours NIOHTTP2 would not send (the stream closed under it, or it broke a
            // rule): that stream ends here, reset if NIOHTTP2 still has it open; the connection is fine.
            guard let (stream, _) = machine.streamClosed(streamError.streamID, code: nil) else { return }
            writeReset(streamError.streamID, .cancel)
            flush()
            fail(stream, .reset(nil))
            closeIfDone()
            return
        }
        // An HTTP/2 error on a received frame: a stream error (NIOHTTP2 reset the stream; its
        // StreamClosedEvent follows) or a connection error (NIOHTTP2 sent GOAWAY); NIOHTTP2 does
        // not say which. Either way no new streams here.
        pool?.remove(self)
        machine.stopTakingStreams()
        if error is IOError || error is ChannelError { context.close(promise: nil) }
        closeIfDone()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool?.remove(self)
        let failure: HTTP2StreamFailure
        if let tls = tlsError {
            failure = .connection(.upstreamTLS(tls))
        } else {
            failure = .reset("the upstream connection closed before the response ended")
        }
        connectFailed(failure.error)
        for stream in touched { stream.touched = false }
        touched.removeAll()
        for stream in machine.connectionClosed() {
            stream.state = .done
            stream.owner?.upstreamFailed(failure)
        }
        context.fireChannelInactive()
    }

    // MARK: Streams (called by `HTTP2UpstreamStream`)

    fileprivate func send(_ stream: HTTP2UpstreamStream, _ part: HTTP2RequestPart) {
        guard let context else { return }
        let id: HTTP2StreamID
        switch stream.state {
        case .done:
            return
        case .started(let started):
            id = started
        case .reserved:
            guard let started = machine.start(stream) else {
                // The connection stopped taking streams before this one's head: it never left.
                stream.state = .done
                let owner = stream.owner
                context.eventLoop.assumeIsolated().execute { owner?.upstreamFailed(.refused) }
                return
            }
            id = started
            stream.state = .started(id)
        }
        switch part {
        case .headers(let headers, let endStream, let checked):
            guard let summary = checked ?? HTTP2HeaderValidation.check(headers, as: .request) else {
                return refuse(stream, id, opened: false)
            }
            if summary.isHEAD { machine.sentHEAD(id) }
            let block = HTTP2Headers.indexesNames(onStream: id) ? HTTP2Headers.indexingPerRequestFields(headers) : headers
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: block, endStream: endStream)))), promise: nil)
            if endStream { machine.sentEndStream(id) }
        case .data(let data, let endStream):
            let bytes = data.readableBytes
            let frame = wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(data), endStream: endStream))))
            if endStream { machine.sentEndStream(id) }
            if bytes == 0 {
                context.write(frame, promise: nil)
                return
            }
            // Counted until it reaches the wire: a stream whose peer's window is shut stops taking body.
            if machine.wroteData(id, bytes: bytes) == false { stream.owner?.upstreamWritabilityChanged(false) }
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { [weak self, weak stream] _ in
                guard let self, self.machine.dataLeft(id, bytes: bytes) == true else { return }
                stream?.owner?.upstreamWritabilityChanged(self.context?.channel.isWritable ?? false)
            }
            context.write(frame, promise: promise)
        case .trailers(let trailers):
            guard HTTP2HeaderValidation.isValid(trailers, as: .trailers) else { return refuse(stream, id, opened: true) }
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: trailers, endStream: true)))), promise: nil)
            machine.sentEndStream(id)
        }
    }

    /// A malformed response (RFC 9113 §8.1.1: its header block, or a body that does not match its
    /// `content-length`): the stream is reset with PROTOCOL_ERROR, as NIOHTTP2 did, and fails.
    private func malformed(_ stream: HTTP2UpstreamStream, _ id: HTTP2StreamID) {
        writeReset(id, .protocolError)
        stream.state = .done
        stream.owner?.upstreamFailed(.reset("the upstream sent a malformed response (PROTOCOL_ERROR)"))
    }

    /// A block NIOHTTP2 would have refused to send is not sent: the stream ends (reset when its
    /// head went out) and its exchange fails. Every received block was checked, so only a block
    /// the sidecar made wrongly gets here.
    private func refuse(_ stream: HTTP2UpstreamStream, _ id: HTTP2StreamID, opened: Bool) {
        if machine.cancel(id), opened { writeReset(id, .internalError) }
        stream.state = .done
        let owner = stream.owner
        context?.eventLoop.assumeIsolated().execute { owner?.upstreamFailed(.reset("the sidecar made a malformed header block")) }
        closeIfDone()
    }

    fileprivate func flush() {
        guard let context else { return }
        if reading {
            needsFlush = true
        } else {
            context.flush()
        }
    }

    fileprivate func isWritable(_ stream: HTTP2UpstreamStream) -> Bool {
        guard let context, context.channel.isWritable else { return false }
        switch stream.state {
        case .reserved: return true
        case .started(let id): return machine.isWritable(id)
        case .done: return false
        }
    }

    fileprivate func setReadsPaused(_ stream: HTTP2UpstreamStream, _ paused: Bool) {
        guard case .started(let id) = stream.state, let increment = machine.setReadsPaused(id, paused) else { return }
        writeWindowUpdate(id, increment)
        flush()
    }

    fileprivate func cancel(_ stream: HTTP2UpstreamStream) {
        switch stream.state {
        case .done:
            return
        case .reserved:
            machine.unreserve()
        case .started(let id):
            if machine.cancel(id) {
                writeReset(id, .cancel)
                flush()
            }
        }
        stream.state = .done
        closeIfDone()
    }

    // MARK: Helpers

    private func fail(_ stream: HTTP2UpstreamStream, _ failure: HTTP2UpstreamConnectionStateMachine<HTTP2UpstreamStream>.Failure) {
        stream.state = .done
        switch failure {
        case .refused:
            stream.owner?.upstreamFailed(.refused)
        case .reset(let code?):
            stream.owner?.upstreamFailed(.reset("the upstream reset the stream (\(code))"))
        case .reset(nil):
            stream.owner?.upstreamFailed(.reset("the upstream closed the stream before the response ended"))
        }
    }

    private func touch(_ stream: HTTP2UpstreamStream) {
        guard !stream.touched else { return }
        stream.touched = true
        touched.append(stream)
    }

    private func writeReset(_ id: HTTP2StreamID, _ code: HTTP2ErrorCode) {
        context?.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(code))), promise: nil)
        needsFlush = true
    }

    private func writeWindowUpdate(_ id: HTTP2StreamID, _ increment: Int) {
        context?.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        needsFlush = true
    }

    /// A connection that takes no new streams closes once its last stream is done.
    private func closeIfDone() {
        guard machine.shouldClose, waiting.isEmpty, let context else { return }
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.close(promise: nil)
    }

    /// Drain: no new streams; closes now when idle, else when its last stream ends.
    func drain() {
        machine.stopTakingStreams()
        closeIfDone()
    }

    private static func isInformational(_ headers: HPACKHeaders) -> Bool {
        headers.first(name: ":status")?.utf8.first == UInt8(ascii: "1")
    }
}

extension HTTP2StreamFailure {
    /// As the error a stream's open fails with.
    var error: ProxyError {
        switch self {
        case .refused: return ProxyError(.upstreamReset, "the upstream refused the stream")
        case .reset(let detail): return ProxyError(.upstreamReset, detail)
        case .connection(let error): return error
        }
    }
}

/// One request/response exchange's stream on an `HTTP2UpstreamConnection`: the `HTTP2Upstream`
/// an HTTP/2 exchange (or a mirror) talks to. Its id is taken when it sends its head, so ids go
/// out in order however the streams were handed out.
final class HTTP2UpstreamStream: HTTP2Upstream {
    enum State: Equatable {
        /// Counted on the connection, no id yet.
        case reserved
        case started(HTTP2StreamID)
        /// Ended, failed or cancelled: nothing more goes out or comes in.
        case done
    }

    weak var owner: (any HTTP2UpstreamOwner)?
    /// Strong until the stream is done: the connection's table holds the stream, the stream its connection.
    let connection: HTTP2UpstreamConnection
    fileprivate(set) var state = State.reserved
    /// Got frames in the connection's current read batch.
    fileprivate var touched = false

    init(owner: any HTTP2UpstreamOwner, connection: HTTP2UpstreamConnection) {
        self.owner = owner
        self.connection = connection
    }

    func send(_ part: HTTP2RequestPart) { connection.send(self, part) }
    var checksResponseBlocks: Bool { true }
    func flush() { connection.flush() }
    var isWritable: Bool { connection.isWritable(self) }
    /// Paused: the stream's receive window is no longer given back, so its sender stops once the
    /// window is used; resumed: given back.
    func setReadsPaused(_ paused: Bool) { connection.setReadsPaused(self, paused) }

    func cancel() {
        owner = nil
        connection.cancel(self)
    }
}
