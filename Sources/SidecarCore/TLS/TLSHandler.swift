import NIOCore

/// One duplex handler that speaks TLS over the channel below it, for either role: ciphertext
/// in and out below, plaintext `ByteBuffer`s in and out above.
///
/// Decisions live in `TLSHandlerStateMachine`; this handler carries them out against a
/// `TLSConnection`. Writes made before the handshake finishes are buffered and sent after it;
/// on success it fires `TLSEvent.handshakeCompleted` (peer identity, ALPN, SNI, resumption),
/// on failure it fires a `TLSError`, sends OpenSSL's alert and closes. Each user write becomes
/// one ciphertext write carrying the same promise, so the channel's writability reflects the
/// socket's and a slow reader pushes back on the writer. Runs on the channel's event loop only.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    let connection: TLSConnection
    /// The channel's allocator, read once (a pipeline and a channel getter per read otherwise).
    private var allocator = ByteBufferAllocator()
    private var stateMachine = TLSHandlerStateMachine()
    private var bufferedWrites = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>()
    private var flushRequested = false
    private var handshakeTimeout: Scheduled<Void>?
    private var closePromise: EventLoopPromise<Void>?

    /// What the handshake established; nil until it completes.
    public private(set) var handshakeInfo: TLSHandshakeInfo?

    /// Whether the mesh's own record layer writes and reads this connection's records (tests).
    var usesMeshRecordLayer: (writes: Bool, reads: Bool) {
        (connection.meshRecordLayer != nil, connection.meshRecordLayer?.readsRecords ?? false)
    }

    /// - Parameters:
    ///   - serverName: the SNI a client sends (the destination service name in the mesh).
    ///   - peerIdentity: narrows the context's identity policy for this connection.
    ///   - sessionKey: client session-cache key (defaults to `serverName`).
    public init(
        context: TLSContext,
        serverName: String? = nil,
        peerIdentity: PeerIdentityPolicy? = nil,
        sessionKey: String? = nil
    ) throws(TLSError) {
        self.connection = try TLSConnection(
            context: context, serverName: serverName, peerIdentity: peerIdentity, sessionKey: sessionKey)
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard stateMachine.channelActive() == .startHandshake else { return }
        let timeout = connection.context.configuration.handshakeTimeout
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        handshakeTimeout = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            if handler.stateMachine.handshakeTimedOut() == .reportAndClose {
                handler.fail(context: context, TLSError(.handshakeTimeout, "no TLS handshake within \(timeout)"))
            }
        }
        if connection.context.role == .client { advanceHandshake(context: context) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        handshakeTimeout?.cancel()
        if stateMachine.channelInactive() == .reportHandshakeInterrupted {
            context.fireErrorCaught(TLSError(.closedDuringHandshake, "peer closed the connection during the handshake"))
        }
        failBufferedWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard stateMachine.acceptsCiphertext else { return }
        connection.receive(unwrapInboundIn(data))
        if stateMachine.state == .handshaking {
            advanceHandshake(context: context)
        }
        if stateMachine.state == .active {
            readPlaintext(context: context)
        }
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        switch connection.handshake() {
        case .wantMoreData:
            sendOutput(context: context)
        case .failed(let error):
            fail(context: context, error)
        case .complete:
            handshakeTimeout?.cancel()
            handshakeTimeout = nil
            sendOutput(context: context)
            guard stateMachine.handshakeCompleted() == .announceAndFlushBuffered else { return }
            let info = connection.handshakeInfo
            handshakeInfo = info
            context.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(info))
            writeBuffered(context: context)
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        readLoop: while stateMachine.state == .active {
            switch connection.read(allocator: allocator) {
            case .data(let plaintext):
                context.fireChannelRead(wrapInboundOut(plaintext))
            case .wantMoreData:
                break readLoop
            case .closeNotify:
                guard stateMachine.closeNotifyReceived() == .replyAndClose else { break readLoop }
                context.fireUserInboundEventTriggered(TLSEvent.closeNotifyReceived)
                connection.shutdown()
                sendOutput(context: context)
                context.close(promise: nil)
                return
            case .failed(let error):
                fail(context: context, error)
                return
            }
        }
        // Post-handshake messages (key updates) may need an answer.
        if connection.hasPendingOutput { sendOutput(context: context) }
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch stateMachine.write() {
        case .buffer:
            bufferedWrites.append((buffer, promise))
        case .encrypt:
            coalesce(context: context, buffer, promise: promise)
        case .failClosed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        if stateMachine.state == .active {
            encryptCoalesced(context: context)
            context.flush()
        } else {
            flushRequested = true
        }
    }

    // MARK: Coalescing: one TLS record per flush for small writes

    /// Plaintext written since the last flush, encrypted together at the flush: a response head
    /// and its body (two writes) go out as one record, not two (one seal here, one open at the
    /// peer, 22 bytes less on the wire). Bounded by `coalesceLimit`; bigger data is encrypted
    /// as it comes. Nothing is delayed: unflushed data would wait in the channel anyway.
    private var coalesced: ByteBuffer?
    private var coalescedPromise: EventLoopPromise<Void>?
    private let coalesceLimit = 16 * 1024

    private func coalesce(context: ChannelHandlerContext, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        if var pending = coalesced {
            if pending.readableBytes + buffer.readableBytes > coalesceLimit {
                encryptCoalesced(context: context)
            } else {
                coalesced = nil  // unique while appended to
                pending.writeImmutableBuffer(buffer)
                coalesced = pending
                chain(promise)
                return
            }
        }
        if buffer.readableBytes >= coalesceLimit {
            encryptAndWrite(context: context, buffer, promise: promise)
        } else {
            coalesced = buffer
            chain(promise)
        }
    }

    private func chain(_ promise: EventLoopPromise<Void>?) {
        guard let promise else { return }
        if let existing = coalescedPromise {
            existing.futureResult.cascade(to: promise)
        } else {
            coalescedPromise = promise
        }
    }

    private func encryptCoalesced(context: ChannelHandlerContext) {
        guard let pending = coalesced else { return }
        let promise = coalescedPromise
        coalesced = nil
        coalescedPromise = nil
        encryptAndWrite(context: context, pending, promise: promise)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode != .input else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch stateMachine.closeRequested() {
        case .sendCloseNotifyThenClose:
            encryptCoalesced(context: context)  // written before the close: sent before close_notify
            connection.shutdown()
            sendOutput(context: context)
            context.close(mode: mode, promise: promise)
        case .closeTransport:
            failBufferedWrites(ChannelError.ioOnClosedChannel)
            context.close(mode: mode, promise: promise)
        case .alreadyClosing:
            context.close(mode: mode, promise: promise)
        }
    }

    private func encryptAndWrite(context: ChannelHandlerContext, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        do {
            try connection.write(buffer)
        } catch {
            promise?.fail(error)
            fail(context: context, error)
            return
        }
        if let ciphertext = connection.takeOutput() {
            context.write(wrapOutboundOut(ciphertext), promise: promise)
        } else {
            promise?.succeed()
        }
    }

    private func writeBuffered(context: ChannelHandlerContext) {
        while stateMachine.state == .active, let (buffer, promise) = bufferedWrites.popFirst() {
            coalesce(context: context, buffer, promise: promise)
        }
        if stateMachine.state == .active { encryptCoalesced(context: context) }
        if flushRequested {
            flushRequested = false
            context.flush()
        }
    }

    /// Writes and flushes whatever ciphertext OpenSSL produced (handshake messages, alerts).
    private func sendOutput(context: ChannelHandlerContext) {
        guard let ciphertext = connection.takeOutput() else { return }
        context.writeAndFlush(wrapOutboundOut(ciphertext), promise: nil)
    }

    private func fail(context: ChannelHandlerContext, _ error: TLSError) {
        guard stateMachine.failed() == .reportAndClose else { return }
        handshakeTimeout?.cancel()
        handshakeTimeout = nil
        sendOutput(context: context)  // the alert, if OpenSSL made one
        failBufferedWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failBufferedWrites(_ error: Error) {
        while let (_, promise) = bufferedWrites.popFirst() {
            promise?.fail(error)
        }
        coalesced = nil
        coalescedPromise?.fail(error)
        coalescedPromise = nil
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
