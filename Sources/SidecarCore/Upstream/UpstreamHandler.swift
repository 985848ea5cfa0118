import NIOCore

/// The last handler of an upstream connection (to a peer sidecar, or to the local app): parses
/// each response's framing and hands head, body slices and end to the `UpstreamOwner` that
/// leased the connection (a proxy handler or a mirror), by direct calls on the shared event
/// loop (no hop, no copy).
///
/// Between leases it sits idle in the loop's pool; a response byte that arrives while idle,
/// or a close, makes the connection unusable and it leaves the pool.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The proxy handler (or mirror) whose request is on this connection; nil while pooled.
    var owner: (any UpstreamOwner)?
    private(set) var channel: Channel?
    private var parser = HTTPHeadParser()
    private var cumulation: ByteBuffer?
    private var framer: HTTPBodyFramer?
    private var requestMethod: HTTPRequestMethod = .GET
    private var responseKeepAlive = true
    private var sawResponseHead = false
    private var tunnelling = false
    private var tlsError: TLSError?
    private var readsPaused = false
    private var pendingRead = false
    private(set) var isClosed = false
    /// Called once when the channel closes (the pool forgets it). Given the handler rather than
    /// capturing it, so no weak reference is ever made to it.
    var onClose: ((UpstreamHandler) -> Void)?
    /// The destination whose connection-pool slot this connection holds (nil: none, or given
    /// back); the pool frees it once, when the connection closes or its slot is reused.
    var poolCluster: Cluster?
    private let metrics: SidecarMetrics

    init(metrics: SidecarMetrics) {
        self.metrics = metrics
    }

    func handlerAdded(context: ChannelHandlerContext) {
        channel = context.channel
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Where the owner's writes enter the pipeline: here, toward TLS and the socket. Writing
    /// through `Channel.write` started at the pipeline's tail, through the `Channel`
    /// existential's generic entry, which wraps each buffer with run-time casts.
    private var context: ChannelHandlerContext?

    /// Writes `bytes` toward the upstream (not flushed).
    func send(_ bytes: ByteBuffer) {
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Flushes what `send` wrote.
    func flush() {
        context?.flush()
    }

    /// The pool's idle check: one timer per idle stretch, not one per request. A release only
    /// notes when the connection became idle; the timer, when it fires, closes the connection
    /// if it has been idle `idleTimeout` since, re-arms for the rest if it was reused and freed
    /// again meanwhile, and lets the next release re-arm it if the connection is busy.
    private var idleTimer: Scheduled<Void>?
    private var idleSince: NIODeadline?
    private var idleTimeout = TimeAmount.zero

    /// Pooled: close when no request takes this connection within `timeout`.
    func closeIfStillIdle(after timeout: TimeAmount) {
        guard let channel else { return }
        let now = channel.eventLoop.now
        idleSince = now
        if idleTimer == nil || timeout < idleTimeout {
            idleTimer?.cancel()
            scheduleIdleCheck(at: now + timeout, on: channel.eventLoop)
        }
        idleTimeout = timeout
    }

    private func scheduleIdleCheck(at deadline: NIODeadline, on eventLoop: EventLoop) {
        idleTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.idleTimer = nil
            guard self.owner == nil, let since = self.idleSince else { return }  // busy: its release re-arms
            let due = since + self.idleTimeout
            if eventLoop.now >= due {
                self.channel?.close(promise: nil)
            } else {
                self.scheduleIdleCheck(at: due, on: eventLoop)
            }
        }
    }

    /// A new request starts on this connection.
    func begin(owner: any UpstreamOwner, method: HTTPRequestMethod) {
        idleSince = nil
        self.owner = owner
        self.requestMethod = method
        self.framer = nil
        self.sawResponseHead = false
        self.responseKeepAlive = true
        self.parser = HTTPHeadParser()
    }

    /// Its owner lets go mid-exchange: the connection closes and is never reused (a response
    /// that still comes has nobody to go to).
    func abandon() {
        owner = nil
        channel?.close(promise: nil)
    }

    /// An L4 tunnel starts: every byte either way is relayed as is.
    func beginTunnel(owner: any UpstreamOwner) {
        self.owner = owner
        self.tunnelling = true
        self.sawResponseHead = true
    }

    /// Stops (or resumes) reading from the upstream while the downstream cannot take more.
    func setReadsPaused(_ paused: Bool) {
        readsPaused = paused
        if !paused, pendingRead, let channel {
            pendingRead = false
            channel.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if readsPaused {
            pendingRead = true
        } else {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard let owner else {
            // Bytes on an idle keep-alive connection: it is no longer usable.
            context.close(promise: nil)
            return
        }
        if tunnelling {
            owner.upstreamBody(bytes)
            return
        }
        if cumulation == nil || cumulation!.readableBytes == 0 {
            cumulation = bytes
        } else {
            var incoming = bytes
            cumulation!.writeBuffer(&incoming)
        }
        process(owner: owner, context: context)
    }

    private func process(owner: any UpstreamOwner, context: ChannelHandlerContext) {
        while var buffer = cumulation, buffer.readableBytes > 0 {
            if framer == nil {
                let head: HTTPRawResponseHead?
                do {
                    head = try parser.parseResponse(&buffer, requestMethod: requestMethod)
                } catch {
                    cumulation = nil
                    fail(context: context, ProxyError(.upstreamReset, "upstream sent a malformed response: \(error.detail)"))
                    return
                }
                cumulation = buffer
                guard let head else { return }
                parser = HTTPHeadParser()
                if head.isInformational {
                    owner.upstreamResponseHead(head, final: false)
                    continue
                }
                sawResponseHead = true
                responseKeepAlive = head.framing.keepAlive
                // The common small answer: head and whole body in this read, handed over together.
                if owner.takesWholeResponses, case .contentLength(let length) = head.framing.body,
                    length <= Self.wholeBodyLimit, var rest = cumulation, rest.readableBytes >= length
                {
                    let body = rest.readSlice(length: length)!
                    cumulation = rest
                    owner.upstreamResponseHead(head, wholeBody: body)
                    guard self.owner === owner else { return }
                    finish(reusable: responseKeepAlive && rest.readableBytes == 0)
                    return
                }
                owner.upstreamResponseHead(head, final: true)
                // The owner may have dropped this response to retry elsewhere.
                guard self.owner === owner else { return }
                if head.framing.body == .tunnel {
                    tunnelling = true
                    if let rest = cumulation, rest.readableBytes > 0 { owner.upstreamBody(rest) }
                    cumulation = nil
                    return
                }
                framer = HTTPBodyFramer(framing: head.framing.body)
                buffer = cumulation!
            }
            do {
                let (body, complete) = try framer!.readBody(from: &buffer)
                cumulation = buffer
                if let body, body.readableBytes > 0 { owner.upstreamBody(body) }
                guard complete else { return }
            } catch {
                cumulation = nil
                fail(context: context, ProxyError(.upstreamReset, "upstream body framing: \(error.detail)"))
                return
            }
            finish(reusable: responseKeepAlive && (cumulation?.readableBytes ?? 0) == 0)
            return
        }
    }

    /// The largest body handed over with its head in one call (copied behind the head when
    /// the owner writes them as one buffer).
    static let wholeBodyLimit = 4096

    private func finish(reusable: Bool) {
        let owner = self.owner
        self.owner = nil
        self.framer = nil
        cumulation = nil
        if !reusable { channel?.close(promise: nil) }
        owner?.upstreamResponseEnd(reusable: reusable && !isClosed)
    }

    private func fail(context: ChannelHandlerContext, _ error: ProxyError) {
        let owner = self.owner
        self.owner = nil
        context.close(promise: nil)
        owner?.upstreamFailed(error, responseStarted: sawResponseHead)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        owner?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? TLSError {
            tlsError = error
            metrics.tlsHandshakeErrors(.outbound, error.reason).increment()
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        idleTimer?.cancel()
        idleTimer = nil
        onClose?(self)
        onClose = nil
        guard let owner else { return }
        if tunnelling {
            self.owner = nil
            owner.upstreamResponseEnd(reusable: false)
            return
        }
        if var framer, sawResponseHead, (try? framer.endOfInput()) != nil {
            self.framer = framer
            finish(reusable: false)
            return
        }
        self.owner = nil
        let error: ProxyError
        if let tlsError {
            error = .upstreamTLS(tlsError)
        } else if sawResponseHead {
            error = ProxyError(.upstreamReset, "upstream closed in the middle of the response")
        } else {
            error = ProxyError(.upstreamReset, "upstream closed the connection before responding")
        }
        owner.upstreamFailed(error, responseStarted: sawResponseHead)
    }

    /// The TLS failure seen on this connection, if any (for connect-time errors).
    var handshakeError: TLSError? { tlsError }
}
