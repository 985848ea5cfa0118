import NIOCore

/// Whoever holds a leased upstream connection and receives its response, by direct calls on
/// the connection's event loop: the downstream's `HTTPProxyHandler`, or a fire-and-forget
/// `MirrorExchange` that discards what it gets.
///
/// Calls come from `UpstreamHandler` only, in order: informational heads, one final head,
/// body slices (or, for an owner that `takesWholeResponses`, a small final head and its whole
/// body in one call), then exactly one of `upstreamResponseEnd` / `upstreamFailed`.
/// A downstream connection the loop knows for draining (the proxy handler), so `Upstream/`
/// never names the handler type.
protocol DownstreamConnection: AnyObject {
    /// Close now when idle, else after the current response (with `connection: close`).
    func beginDrain()
}

protocol UpstreamOwner: AnyObject {
    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool)
    /// Whether `upstreamResponseHead(_:wholeBody:)` should get a final head together with its
    /// whole body when both arrived in one read (to write them as one buffer); otherwise the
    /// head and the body come as usual.
    var takesWholeResponses: Bool { get }
    func upstreamResponseHead(_ head: HTTPRawResponseHead, wholeBody: ByteBuffer)
    func upstreamBody(_ body: ByteBuffer)
    func upstreamReadComplete()
    func upstreamWritabilityChanged(_ writable: Bool)
    func upstreamResponseEnd(reusable: Bool)
    func upstreamFailed(_ error: ProxyError, responseStarted: Bool)
}

extension UpstreamOwner {
    var takesWholeResponses: Bool { false }
    func upstreamResponseHead(_ head: HTTPRawResponseHead, wholeBody: ByteBuffer) {
        preconditionFailure("upstreamResponseHead(_:wholeBody:) without takesWholeResponses")
    }
}
