import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix

/// One event loop's HTTP/2 upstream connections: mTLS with ALPN `h2` to peer sidecars, h2c
/// with prior knowledge to the local app. Streams are multiplexed: a connection carries up to
/// `maxStreamsPerConnection` (or fewer, if the peer's SETTINGS say so) at once, then another
/// connection opens. Lives on its loop like `ConnectionPool`; streams it opens are on the same
/// loop as the downstream stream that asked (no hop).
final class HTTP2ConnectionPool {
    /// DESIGN.md "Protocols": at most 100 concurrent streams per connection, then another.
    static let maxStreamsPerConnection = 100

    /// One multiplexed upstream connection.
    final class Connection {
        let key: ConnectionPool.Key
        var multiplexer: NIOHTTP2Handler.StreamMultiplexer?
        var channel: Channel?
        /// Streams opened or promised on it, not yet closed.
        var streams = 0
        /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS, capped at ours.
        var streamLimit = HTTP2ConnectionPool.maxStreamsPerConnection
        /// False once it closes, fails, or the peer sent GOAWAY: no new streams.
        var usable = true
        /// Stream opens waiting for the connection to come up.
        var waiting: [(promise: EventLoopPromise<Channel>, initializer: NIOChannelInitializer)] = []
        /// Why it failed, when TLS refused the peer (the stream errors say `tls-failed`).
        var tlsError: TLSError?

        init(key: ConnectionPool.Key) { self.key = key }

        var hasRoom: Bool { usable && streams < streamLimit }
    }

    let eventLoop: EventLoop
    let connector: any UpstreamConnector
    var trustDomain: String
    private var connections: [ConnectionPool.Key: [Connection]] = [:]
    /// Set by drain: every connection is told GOAWAY-style to finish (no new streams).
    var draining = false
    /// The loop's HTTP/2 read batches: every HTTP/2 connection on the loop, downstream and
    /// upstream, flushes once per batch (`HTTP2FlushCoalescer`).
    let readBatch = HTTP2ReadBatch()

    init(eventLoop: EventLoop, connector: any UpstreamConnector, trustDomain: String) {
        self.eventLoop = eventLoop
        self.connector = connector
        self.trustDomain = trustDomain
    }

    /// Open connections to `key` (tests, `/clusters`).
    func connectionCount(_ key: ConnectionPool.Key) -> Int { connections[key]?.count ?? 0 }

    /// Opens a stream to `key` on a connection with room, or on a new one; `initializer` sets
    /// up the stream channel's pipeline. Fails with a `ProxyError` (`connect-failed`,
    /// `tls-failed`, `upstream-reset`).
    func openStream(
        _ key: ConnectionPool.Key, connectTimeout: TimeAmount, initializer: @escaping NIOChannelInitializer
    ) -> EventLoopFuture<Channel> {
        let connection = connections[key]?.first(where: \.hasRoom) ?? connect(key, timeout: connectTimeout)
        connection.streams += 1
        let promise = eventLoop.makePromise(of: Channel.self)
        if let multiplexer = connection.multiplexer {
            multiplexer.createStreamChannel(promise: promise, initializer)
        } else {
            connection.waiting.append((promise, initializer))
        }
        let loopBound = NIOLoopBound(connection, eventLoop: eventLoop)
        return promise.futureResult.map { channel in
            channel.closeFuture.whenComplete { _ in loopBound.value.streams -= 1 }
            return channel
        }.flatMapErrorThrowing { error in
            loopBound.value.streams -= 1
            throw Self.proxyError(error, connection: loopBound.value)
        }
    }

    private func connect(_ key: ConnectionPool.Key, timeout: TimeAmount) -> Connection {
        let connection = Connection(key: key)
        connections[key, default: []].append(connection)
        let observer = HTTP2ConnectionObserver(connection: connection, pool: self)
        let bound = NIOLoopBound(observer, eventLoop: eventLoop)
        let batch = NIOLoopBound(readBatch, eventLoop: eventLoop)
        connector.connectHTTP2(key, trustDomain: trustDomain, timeout: timeout, on: eventLoop) { channel in
            try channel.pipeline.syncOperations.addHandler(HTTP2FlushCoalescer(batch: batch.value))
            let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                mode: .client,
                connectionConfiguration: HTTP2Settings.client,
                streamConfiguration: HTTP2Settings.stream,
                inboundStreamInitializer: { channel in channel.close() }  // no server push
            )
            try channel.pipeline.syncOperations.addHandler(bound.value)
            bound.value.connection.multiplexer = multiplexer
        }.assumeIsolated().whenComplete { [weak self] result in
            switch result {
            case .success(let channel):
                connection.channel = channel
                let waiting = connection.waiting
                connection.waiting = []
                for (promise, initializer) in waiting {
                    connection.multiplexer?.createStreamChannel(promise: promise, initializer)
                }
            case .failure(let error):
                self?.remove(connection)
                let waiting = connection.waiting
                connection.waiting = []
                for (promise, _) in waiting { promise.fail(error) }
            }
        }
        return connection
    }

    /// The connection closed or the peer said GOAWAY: no new streams on it.
    func remove(_ connection: Connection) {
        connection.usable = false
        connections[connection.key]?.removeAll { $0 === connection }
        if connections[connection.key]?.isEmpty == true { connections[connection.key] = nil }
    }

    /// Drain: no new streams on the open connections; idle ones close now, busy ones stay until the process ends.
    func closeAll() {
        draining = true
        for connection in connections.values.joined() {
            connection.usable = false
            if connection.streams == 0 { connection.channel?.close(promise: nil) }
        }
        connections = [:]
        for handler in http1Idle.values.joined() { handler.context?.close(promise: nil) }
        http1Idle = [:]
    }

    // MARK: HTTP/1.1 connections to the app (HTTP/2 callers translated)

    /// At most this many HTTP/1.1 connections per app per loop (one request each at a time);
    /// streams beyond them wait for one to come free, within their connect timeout. Envoy's
    /// default `max_connections` per cluster.
    static let maxHTTP1AppConnections = 1024

    private var http1Idle: [HostPort: [HTTP1AppConnectionHandler]] = [:]
    private var http1Open: [HostPort: Int] = [:]
    private var http1Waiters: [HostPort: [(id: Int, promise: EventLoopPromise<HTTP1AppConnectionHandler>, timeout: TimeAmount)]] = [:]
    private var nextWaiter = 0

    /// An idle connection to `app`, a new one while under the cap, else the next one released.
    func leaseHTTP1(_ app: HostPort, connectTimeout: TimeAmount) -> EventLoopFuture<HTTP1AppConnectionHandler> {
        while let handler = http1Idle[app]?.popLast() {
            if handler.context?.channel.isActive == true { return eventLoop.assumeIsolated().makeSucceededFuture(handler) }
        }
        if http1Open[app, default: 0] < Self.maxHTTP1AppConnections {
            return connectHTTP1(app, timeout: connectTimeout)
        }
        let promise = eventLoop.makePromise(of: HTTP1AppConnectionHandler.self)
        nextWaiter += 1
        let id = nextWaiter
        http1Waiters[app, default: []].append((id, promise, connectTimeout))
        eventLoop.assumeIsolated().scheduleTask(in: connectTimeout) { [weak self] in
            guard let self, let index = self.http1Waiters[app]?.firstIndex(where: { $0.id == id }) else { return }
            self.http1Waiters[app]?.remove(at: index)
            promise.fail(ProxyError(.connectFailed, "no connection to the app \(app) came free within \(connectTimeout.nanoseconds / 1_000_000) ms"))
        }
        return promise.futureResult
    }

    private func connectHTTP1(_ app: HostPort, timeout: TimeAmount) -> EventLoopFuture<HTTP1AppConnectionHandler> {
        http1Open[app, default: 0] += 1
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(HTTP1AppConnectionHandler())
                }
            }
            .connect(host: app.host, port: app.port)
            .flatMapThrowing { channel in try channel.pipeline.syncOperations.handler(type: HTTP1AppConnectionHandler.self) }
            .assumeIsolated()
            .map { [weak self] handler in
                handler.onClose = { [weak self] in self?.http1Closed(app) }
                return handler
            }
            .flatMapErrorThrowing { [weak self] error in
                self?.http1Closed(app)
                throw ProxyError(.connectFailed, "connect to \(app) failed: \(error)")
            }
            .nonisolated()
    }

    /// A connection to `app` closed (or never opened): its slot goes to the next waiter.
    private func http1Closed(_ app: HostPort) {
        http1Open[app, default: 1] -= 1
        http1Idle[app]?.removeAll { $0.context?.channel.isActive != true }
        guard var waiters = http1Waiters[app], !waiters.isEmpty else { return }
        let waiter = waiters.removeFirst()
        http1Waiters[app] = waiters
        connectHTTP1(app, timeout: waiter.timeout).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let handler): waiter.promise.assumeIsolated().succeed(handler)
            case .failure(let error): waiter.promise.fail(error)
            }
        }
    }

    /// A connection whose response ended and may carry another request: to the oldest waiter,
    /// else idle (closed when draining).
    func releaseHTTP1(_ handler: HTTP1AppConnectionHandler, for app: HostPort) {
        guard !draining, handler.context?.channel.isActive == true else {
            handler.context?.close(promise: nil)
            return
        }
        if var waiters = http1Waiters[app], !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            http1Waiters[app] = waiters
            waiter.promise.assumeIsolated().succeed(handler)
            return
        }
        http1Idle[app, default: []].append(handler)
    }

    private static func proxyError(_ error: Error, connection: Connection) -> ProxyError {
        if let tls = connection.tlsError { return ProxyError(.tlsFailed, "\(tls.reason.rawValue): \(tls.detail)") }
        if let error = error as? ProxyError { return error }
        return ProxyError(.upstreamReset, "HTTP/2 stream could not open: \(error)")
    }
}

/// The last handler of an upstream HTTP/2 connection: learns the peer's stream limit, marks the
/// connection unusable on GOAWAY or close, and keeps the TLS failure that closed it.
final class HTTP2ConnectionObserver: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    let connection: HTTP2ConnectionPool.Connection
    weak var pool: HTTP2ConnectionPool?

    init(connection: HTTP2ConnectionPool.Connection, pool: HTTP2ConnectionPool) {
        self.connection = connection
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .goAway:
            pool?.remove(connection)
            if connection.streams == 0 { context.close(promise: nil) }
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .maxConcurrentStreams {
                connection.streamLimit = min(setting.value, HTTP2ConnectionPool.maxStreamsPerConnection)
            }
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TLSError { connection.tlsError = tls }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool?.remove(connection)
        context.fireChannelInactive()
    }
}

/// The HTTP/2 settings the sidecar sends, as server (downstream) and client (upstream).
enum HTTP2Settings {
    /// A caller may open up to 1000 streams at once on one connection (each is an exchange);
    /// upstream they spread over connections of 100.
    static let server = connection(maxConcurrentStreams: 1000)
    static let client = connection(maxConcurrentStreams: HTTP2ConnectionPool.maxStreamsPerConnection)

    private static func connection(maxConcurrentStreams: Int) -> NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 64 * 1024),
            HTTP2Setting(parameter: .initialWindowSize, value: HTTP2Settings.streamWindow),
        ]
        return configuration
    }

    /// What one stream may have in flight toward us before its reader takes it: the bound on
    /// what a slow reader can make the sidecar hold per stream.
    static let streamWindow = 256 * 1024

    /// Per stream: the receive window above, and write buffering bounded by the flow
    /// controller's watermarks (a stream stops being writable past the high one).
    static let stream: NIOHTTP2Handler.StreamConfiguration = {
        var configuration = NIOHTTP2Handler.StreamConfiguration()
        configuration.targetWindowSize = HTTP2Settings.streamWindow
        configuration.outboundBufferSizeHighWatermark = 64 * 1024
        configuration.outboundBufferSizeLowWatermark = 16 * 1024
        return configuration
    }()
}
