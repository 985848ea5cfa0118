import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix

/// One event loop's HTTP/2 upstream connections: mTLS with ALPN `h2` to peer sidecars, h2c
/// with prior knowledge to the local app. Streams are multiplexed: a connection carries up to
/// `maxStreamsPerConnection` (or fewer, if the peer's SETTINGS say so) at once, then another
/// connection opens. Each connection runs NIOHTTP2 in frame mode with its streams as plain
/// objects (`HTTP2UpstreamConnection`), no child channel per stream. Lives on its loop like
/// `ConnectionPool`; streams it opens are on the same loop as the downstream stream that asked
/// (no hop).
final class HTTP2ConnectionPool {
    /// DESIGN.md "Protocols": at most 100 concurrent streams per connection, then another.
    static let maxStreamsPerConnection = 100

    let eventLoop: EventLoop
    let connector: any UpstreamConnector
    var trustDomain: String
    private var connections: [ConnectionPool.Key: [HTTP2UpstreamConnection]] = [:]
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

    /// A stream to `key` for `owner` on a connection with room, or on a new one (ready once the
    /// connection is up). Fails with a `ProxyError` (`connect-failed`, `tls-failed`).
    func openStream(
        _ key: ConnectionPool.Key, connectTimeout: TimeAmount, owner: any HTTP2UpstreamOwner
    ) -> EventLoopFuture<HTTP2UpstreamStream> {
        let connection = connections[key]?.first(where: \.hasRoom) ?? connect(key, timeout: connectTimeout)
        return connection.reserveStream(owner: owner, on: eventLoop)
    }

    /// A stream to `key` for `owner` at once, on a connection that is up and has room; nil when
    /// none is (then `openStream`). Most streams open so: no future, no callback per request.
    func openStreamNow(_ key: ConnectionPool.Key, owner: any HTTP2UpstreamOwner) -> HTTP2UpstreamStream? {
        guard let connection = connections[key]?.first(where: \.isReadyWithRoom) else { return nil }
        return connection.reserveStreamNow(owner: owner)
    }

    /// A new connection to `key`: `NIOHTTP2Handler` in frame mode, `HTTP2UpstreamConnection` after it.
    private func connect(_ key: ConnectionPool.Key, timeout: TimeAmount) -> HTTP2UpstreamConnection {
        let connection = HTTP2UpstreamConnection(key: key, pool: self)
        connections[key, default: []].append(connection)
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        let batch = NIOLoopBound(readBatch, eventLoop: eventLoop)
        connector.connectHTTP2(key, trustDomain: trustDomain, timeout: timeout, on: eventLoop) { channel in
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(HTTP2FlushCoalescer(batch: batch.value))
            try sync.addHandler(
                NIOHTTP2Handler(
                    mode: .client, connectionConfiguration: HTTP2Settings.client,
                    streamConfiguration: HTTP2Settings.stream))
            try sync.addHandler(bound.value)
        }.assumeIsolated().whenFailure { [weak self] error in
            self?.remove(connection)
            connection.connectFailed(error as? ProxyError ?? ProxyError(.connectFailed, "\(error)"))
        }
        return connection
    }

    /// The connection closed or takes no new streams (GOAWAY, an error): none go on it.
    func remove(_ connection: HTTP2UpstreamConnection) {
        connections[connection.key]?.removeAll { $0 === connection }
        if connections[connection.key]?.isEmpty == true { connections[connection.key] = nil }
    }

    /// Drain: no new streams on the open connections; each closes once its last stream ends.
    func closeAll() {
        draining = true
        let open = connections.values.joined()
        connections = [:]
        for connection in open { connection.drain() }
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
}

/// The HTTP/2 settings the sidecar sends, as server (downstream) and client (upstream).
enum HTTP2Settings {
    /// A caller may open up to 1000 streams at once on one connection (each is an exchange);
    /// upstream they spread over connections of 100.
    static let server = connection(maxConcurrentStreams: maxDownstreamStreams)
    static let maxDownstreamStreams = 1000
    static let client = connection(maxConcurrentStreams: HTTP2ConnectionPool.maxStreamsPerConnection)

    private static func connection(maxConcurrentStreams: Int) -> NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        // The frame-mode handlers check every header block they receive and send themselves
        // (`HTTP2HeaderValidation`, the same rules), once per block, and every received body
        // against its `content-length` (the connections' state machines); NIOHTTP2's checks
        // cost 16 % and 3 % of the pair path's instructions per request.
        configuration.headerBlockValidation = .disabled
        configuration.contentLengthValidation = .disabled
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

    /// The receive window of an upstream connection (frame mode: `HTTP2UpstreamConnection` gives
    /// it back on receipt; each stream's share is bounded by `streamWindow`).
    static let connectionWindow = 4 * 1024 * 1024

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
