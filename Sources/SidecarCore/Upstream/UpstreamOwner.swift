import NIOCore

/// Whoever holds a leased upstream connection and receives its response, by direct calls on
/// the connection's event loop: the downstream's `HTTPProxyHandler`, or a fire-and-forget
/// `MirrorExchange` that discards what it gets.
///
/// Calls come from `UpstreamHandler` only, in order: informational heads, one final head,
/// body slices, then exactly one of `upstreamResponseEnd` / `upstreamFailed`.
/// A downstream connection the loop knows for draining (the proxy handler), so `Upstream/`
/// never names the handler type.
protocol DownstreamConnection: AnyObject {
    /// Close now when idle, else after the current response (with `connection: close`).
    func beginDrain()
}

protocol UpstreamOwner: AnyObject {
    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool)
    func upstreamBody(_ body: ByteBuffer)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(_ writable: Bool)
    func upstreamResponseEnd(reusable: Bool)
    func upstreamFailed(_ error: ProxyError, responseStarted: Bool)
}
