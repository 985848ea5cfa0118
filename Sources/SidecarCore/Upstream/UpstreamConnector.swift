import NIOCore
import NIOPosix

/// Opens one upstream connection for the loop's pool: TCP to the endpoint, mTLS with the
/// destination's expected identity when the key names a service, then the `UpstreamHandler`.
/// The pool decides when to connect; this only knows how. Injected into the loop's `ConnectionPool`, so
/// tests can put the upstream on an `EmbeddedChannel` and drive a whole exchange without a
/// socket (`advanceTime` moves every timer).
protocol UpstreamConnector: Sendable {
    /// Connects `upstream` to `key.address` on `eventLoop` within `timeout`; fails with a
    /// `ProxyError` (`connect-failed`, `tls-failed`).
    func connect(
        _ key: ConnectionPool.Key, upstream: UpstreamHandler, trustDomain: String, timeout: TimeAmount,
        on eventLoop: EventLoop
    ) -> EventLoopFuture<Void>

    /// Connects for HTTP/2 to `key.address`: mTLS offering ALPN `h2` when the key names a
    /// service, h2c with prior knowledge to the app otherwise; `configure` adds the HTTP/2
    /// handlers on the channel's loop. Fails with a `ProxyError` like `connect`.
    func connectHTTP2(
        _ key: ConnectionPool.Key, trustDomain: String, timeout: TimeAmount, on eventLoop: EventLoop,
        configure: @escaping @Sendable (Channel) throws -> Void
    ) -> EventLoopFuture<Channel>
}

extension UpstreamConnector {
    /// Connectors that carry only HTTP/1.1 (in-memory test upstreams).
    func connectHTTP2(
        _ key: ConnectionPool.Key, trustDomain: String, timeout: TimeAmount, on eventLoop: EventLoop,
        configure: @escaping @Sendable (Channel) throws -> Void
    ) -> EventLoopFuture<Channel> {
        eventLoop.makeFailedFuture(ProxyError(.connectFailed, "this connector does not speak HTTP/2"))
    }
}

/// The real connector: a `ClientBootstrap` on the downstream connection's own loop (no hop),
/// `TCP_NODELAY`, and our OpenSSL `TLSHandler` checking `spiffe://<td>/service/<destination>`.
struct SocketUpstreamConnector: UpstreamConnector {
    let clientTLS: TLSContextStore?
    /// The client context offering ALPN `mesh-tcp`, for `outbound.tcp` tunnels.
    let tunnelTLS: TLSContextStore?
    /// The client context offering ALPN `h2` (then `http/1.1`), for HTTP/2 callers.
    var http2TLS: TLSContextStore? = nil

    func connect(
        _ key: ConnectionPool.Key, upstream: UpstreamHandler, trustDomain: String, timeout: TimeAmount,
        on eventLoop: EventLoop
    ) -> EventLoopFuture<Void> {
        let tls: TLSHandler?
        if let service = key.service {
            guard let store = key.tunnel ? tunnelTLS : clientTLS,
                let expected = SPIFFEID.service(service, trustDomain: trustDomain)
            else {
                return eventLoop.makeFailedFuture(ProxyError(.tlsFailed, "no client TLS identity configured"))
            }
            do {
                tls = try TLSHandler(
                    context: store.current, serverName: service, peerIdentity: .exactly([expected]),
                    sessionKey: "\(service)@\(key.address)")
            } catch {
                return eventLoop.makeFailedFuture(ProxyError(.tlsFailed, "\(error)"))
            }
        } else {
            tls = nil
        }
        let handlers = NIOLoopBound((tls, upstream), eventLoop: eventLoop)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (tls, upstream) = handlers.value
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls) }
                    try channel.pipeline.syncOperations.addHandler(upstream)
                }
            }
            .connect(host: key.address.host, port: key.address.port)
            .map { _ in }
            .flatMapErrorThrowing { error in
                throw ProxyError(.connectFailed, "connect to \(key.address) failed: \(Self.describe(error))")
            }
    }

    func connectHTTP2(
        _ key: ConnectionPool.Key, trustDomain: String, timeout: TimeAmount, on eventLoop: EventLoop,
        configure: @escaping @Sendable (Channel) throws -> Void
    ) -> EventLoopFuture<Channel> {
        let tls: TLSHandler?
        do {
            tls = try key.service.map { service in
                guard let store = http2TLS, let expected = SPIFFEID.service(service, trustDomain: trustDomain) else {
                    throw ProxyError(.tlsFailed, "no client TLS identity configured")
                }
                return try TLSHandler(
                    context: store.current, serverName: service, peerIdentity: .exactly([expected]),
                    sessionKey: "h2:\(service)@\(key.address)")
            }
        } catch let error as ProxyError {
            return eventLoop.makeFailedFuture(error)
        } catch {
            return eventLoop.makeFailedFuture(ProxyError(.tlsFailed, "\(error)"))
        }
        let handler = NIOLoopBound(tls, eventLoop: eventLoop)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = handler.value { try channel.pipeline.syncOperations.addHandler(tls) }
                    try configure(channel)
                }
            }
            .connect(host: key.address.host, port: key.address.port)
            .flatMapErrorThrowing { error in
                throw ProxyError(.connectFailed, "connect to \(key.address) failed: \(Self.describe(error))")
            }
    }

    private static func describe(_ error: Error) -> String {
        if let error = error as? ChannelError, case .connectTimeout(let timeout) = error {
            return "timed out after \(timeout.nanoseconds / 1_000_000) ms"
        }
        if let error = error as? IOError { return error.description }
        return "\(error)"
    }
}
