import NIOCore

/// One event loop's upstream connections: idle keep-alive connections per endpoint, new ones
/// opened through the injected `UpstreamConnector` on this same loop (no hop), and, for a
/// destination at its `maxConnections`, the requests waiting for one to come free.
///
/// The limits are the `Cluster`'s (`ConnectionPoolStateMachine` decides: connect, wait, hand
/// over, refuse); this carries its actions out. Confined to its loop; not `Sendable`.
final class ConnectionPool {
    struct Key: Hashable {
        let address: HostPort
        /// The destination service whose identity the peer must present (nil: plain app).
        let service: String?
        /// An L4 tunnel (ALPN `mesh-tcp`): never pooled, never reused.
        var tunnel = false

        /// The address's hash only: it is cached, and an address almost always names one
        /// service (equal keys still hash equal).
        func hash(into hasher: inout Hasher) { hasher.combine(address) }
    }

    /// A request waiting for a connection at its destination's limit.
    struct Waiter {
        let promise: EventLoopPromise<UpstreamHandler>
        let key: Key
        let connectTimeout: TimeAmount
    }

    let eventLoop: EventLoop
    /// Opens upstream connections (TCP + mTLS in production; an in-memory channel in tests).
    let connector: any UpstreamConnector
    private let metrics: SidecarMetrics
    /// Idle connections per endpoint. Each list is a reference, read and changed without the
    /// dictionary's modify accessor (a coroutine that allocated its frame, twice per request).
    private var idle: [Key: IdleList] = [:]

    private final class IdleList {
        var handlers: [UpstreamHandler] = []
    }
    /// Idle connections kept per endpoint that no destination's limits count (the inbound's
    /// app): as many as `circuitBreaker.maxConnections`' default. A destination's own are
    /// bounded by its `maxConnections` share instead, each idle one holding a slot, so a burst
    /// of that many concurrent requests is served again without new connections (a lower cap
    /// closed connections that the next burst reopened: a TLS handshake each).
    static let maxIdleWithoutLimits = 1024
    /// A pooled upstream connection unused this long is closed.
    var idleTimeout: TimeAmount = .hours(1)
    /// Set by drain: connections are no longer kept for reuse.
    var draining = false
    /// The mesh's trust domain (from the route table): a peer sidecar must present
    /// `spiffe://<trustDomain>/service/<key.service>`.
    var trustDomain: String

    init(eventLoop: EventLoop, connector: any UpstreamConnector, metrics: SidecarMetrics, trustDomain: String) {
        self.eventLoop = eventLoop
        self.trustDomain = trustDomain
        self.connector = connector
        self.metrics = metrics
    }

    /// An idle keep-alive connection to `key`, or a new one on this loop. With a `cluster` (a
    /// destination service, not a tunnel) within its pool limits: at `maxConnections` the
    /// request waits for a connection to come free (bounded by `connectTimeout`); with
    /// `maxPendingRequests` also reached it fails at once with `circuit-open` (or the fallback).
    func lease(_ key: Key, cluster: Cluster?, connectTimeout: TimeAmount) -> EventLoopFuture<UpstreamHandler> {
        if let handler = popIdle(key) { return eventLoop.assumeIsolated().makeSucceededFuture(handler) }
        guard !key.tunnel, let cluster else {
            return connect(key, cluster: nil, connectTimeout: connectTimeout)
        }
        let elsewhere = hasIdle(service: cluster.service, except: key)
        let action = cluster.resilience.pool.lease(key.address, idleHere: false, idleElsewhere: elsewhere)
        defer { cluster.publishBreakerState() }
        switch action {
        case .useIdle, .connect:
            return connect(key, cluster: cluster, connectTimeout: connectTimeout)
        case .closeIdleAndConnect:
            closeOneIdle(service: cluster.service, except: key)
            return connect(key, cluster: cluster, connectTimeout: connectTimeout)
        case .wait(let id):
            let promise = eventLoop.makePromise(of: UpstreamHandler.self)
            cluster.waiters[id] = Waiter(promise: promise, key: key, connectTimeout: connectTimeout)
            // Waiting for a connection is part of connecting: bounded by the connect timeout,
            // so a waiter whose request went away does not hold its pending slot for long.
            eventLoop.assumeIsolated().scheduleTask(in: connectTimeout) { [weak self, weak cluster] in
                guard let self, let cluster else { return }
                self.waitTimedOut(id, cluster: cluster, after: connectTimeout)
            }
            return promise.futureResult
        case .reject(let resource):
            return eventLoop.makeFailedFuture(cluster.circuitOpen("circuit breaker \(resource) reached"))
        }
    }

    /// Returns a connection whose response ended cleanly and that may carry another request:
    /// to the oldest request waiting for one, else to the idle list.
    func release(_ handler: UpstreamHandler, key: Key) {
        guard !draining, !handler.isClosed else {
            handler.channel?.close(promise: nil)
            return
        }
        if let cluster = handler.poolCluster {
            let action = cluster.resilience.pool.released(key.address)
            cluster.publishBreakerState()
            switch action {
            case .none, .connect:
                break
            case .handOver(let id):
                guard let waiter = cluster.waiters.removeValue(forKey: id) else { break }
                // Not inline: the releasing exchange is still finishing on this stack.
                eventLoop.assumeIsolated().execute {
                    self.handOver(handler, to: waiter, cluster: cluster)
                }
                return
            case .closeAndConnect(let id, _):
                handler.poolCluster = nil  // its slot goes to the waiter
                handler.channel?.close(promise: nil)
                serveWaiter(id, cluster: cluster)
                return
            }
        }
        let list: IdleList
        if let existing = idle[key] {
            list = existing
        } else {
            list = IdleList()
            idle[key] = list
        }
        guard handler.poolCluster != nil || list.handlers.count < Self.maxIdleWithoutLimits else {
            handler.channel?.close(promise: nil)
            return
        }
        list.handlers.append(handler)
        handler.closeIfStillIdle(after: idleTimeout)
    }

    /// Closes every idle connection (drain, shutdown).
    func closeIdle() {
        for handler in idle.values.flatMap(\.handlers) { handler.channel?.close(promise: nil) }
        idle.removeAll()
    }

    var idleCount: Int { idle.values.reduce(0) { $0 + $1.handlers.count } }

    /// An idle keep-alive connection to `key`, taken from the idle list, or nil (the request's
    /// common case: `lease` without a future). The list is changed in place (one lookup, no copy).
    func popIdle(_ key: Key) -> UpstreamHandler? {
        guard !key.tunnel else { return nil }
        guard let list = idle[key] else { return nil }
        while let handler = list.handlers.popLast() {
            if !handler.isClosed, handler.channel?.isActive == true { return handler }
        }
        return nil
    }

    private func hasIdle(service: String, except key: Key) -> Bool {
        idle.contains { $0.key.service == service && $0.key != key && !$0.value.handlers.isEmpty }
    }

    /// Frees a slot at the connection limit: closes an idle connection to another endpoint
    /// of `service`, handing its slot to the caller's new connection.
    private func closeOneIdle(service: String, except key: Key) {
        guard let other = idle.first(where: { $0.key.service == service && $0.key != key && !$0.value.handlers.isEmpty })?.value,
            let handler = other.handlers.popLast()
        else { return }
        handler.poolCluster = nil
        handler.channel?.close(promise: nil)
    }

    private func waitTimedOut(_ id: Int, cluster: Cluster, after timeout: TimeAmount) {
        guard cluster.resilience.pool.cancel(id: id), let waiter = cluster.waiters.removeValue(forKey: id) else { return }
        cluster.publishBreakerState()
        waiter.promise.fail(
            cluster.circuitOpen("no connection came free within \(timeout.nanoseconds / 1_000_000) ms (max-connections)"))
    }

    /// A waiter gets a connection on its own: a freed slot opens one for it.
    private func serveWaiter(_ id: Int, cluster: Cluster) {
        guard let waiter = cluster.waiters.removeValue(forKey: id) else { return }
        Self.complete(waiter, with: connect(waiter.key, cluster: cluster, connectTimeout: waiter.connectTimeout))
    }

    /// `cascade(to:)` on the loop: the handler is loop-bound, not `Sendable`.
    private static func complete(_ waiter: Waiter, with connection: EventLoopFuture<UpstreamHandler>) {
        connection.assumeIsolated().whenComplete { waiter.promise.assumeIsolated().completeWith($0) }
    }

    private func handOver(_ handler: UpstreamHandler, to waiter: Waiter, cluster: Cluster) {
        if !handler.isClosed, handler.channel?.isActive == true {
            waiter.promise.assumeIsolated().succeed(handler)
        } else {
            // Closed in between (its slot went back to the pool): lease afresh.
            Self.complete(waiter, with: lease(waiter.key, cluster: cluster, connectTimeout: waiter.connectTimeout))
        }
    }

    /// A connection closed (or never connected): it leaves the idle list, and its pool slot,
    /// if it still holds one, opens a connection for the oldest waiter or is freed.
    private func upstreamClosed(_ handler: UpstreamHandler, key: Key) {
        if let list = idle[key], let index = list.handlers.firstIndex(where: { $0 === handler }) {
            list.handlers.remove(at: index)
        }
        guard let cluster = handler.poolCluster else { return }
        handler.poolCluster = nil
        let action = cluster.resilience.pool.closed()
        cluster.publishBreakerState()
        if case .connect(let id, _) = action { serveWaiter(id, cluster: cluster) }
    }

    private func connect(
        _ key: Key, cluster: Cluster?, connectTimeout: TimeAmount
    ) -> EventLoopFuture<UpstreamHandler> {
        let upstream = UpstreamHandler(metrics: metrics)
        if !key.tunnel { upstream.poolCluster = cluster }
        upstream.onClose = { [weak self] upstream in
            self?.upstreamClosed(upstream, key: key)
        }
        return connector.connect(key, upstream: upstream, trustDomain: trustDomain, timeout: connectTimeout, on: eventLoop)
            .assumeIsolated()
            .map { upstream }
            .flatMapErrorThrowing { [weak self] error in
                self?.upstreamClosed(upstream, key: key)
                throw error
            }
            .nonisolated()
    }
}
