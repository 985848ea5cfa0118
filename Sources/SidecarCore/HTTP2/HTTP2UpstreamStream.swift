import NIOCore
import NIOHPACK
import NIOHTTP2

/// A request part going upstream, as the HTTP/2 exchange relays it (and keeps for a replay).
enum HTTP2RequestPart {
    /// `checked`: the block's summary when every field of it was checked already (a caller's
    /// checked head plus additions checked as they were made,
    /// `HTTP2HeaderValidation.areValidAdditions`); nil: check it whole when sent.
    case headers(HPACKHeaders, endStream: Bool, checked: HTTP2HeaderValidation.Summary? = nil)
    case data(ByteBuffer, endStream: Bool)
    case trailers(HPACKHeaders)

    var bodyBytes: Int {
        if case .data(let data, _) = self { return data.readableBytes }
        return 0
    }
}

/// How an upstream stream ended before its response did.
enum HTTP2StreamFailure {
    /// The peer refused it unprocessed (REFUSED_STREAM, or past a GOAWAY's last stream): always
    /// safe to send again.
    case refused
    /// Reset or closed mid-exchange.
    case reset(String)
    /// The connection under it failed (connect, TLS).
    case connection(ProxyError)
}

/// Where an HTTP/2 exchange sends its request: a stream on a multiplexed upstream connection
/// (`HTTP2UpstreamStream`), or an HTTP/1.1 connection to the app (`HTTP1AppStream`).
protocol HTTP2Upstream: AnyObject {
    func send(_ part: HTTP2RequestPart)
    func flush()
    var isWritable: Bool { get }
    /// Stop (or resume) reading the response while the caller cannot take more.
    func setReadsPaused(_ paused: Bool)
    /// The exchange no longer wants it: reset the stream (or close the connection).
    func cancel()
    /// Its response's header blocks were checked as received (`HTTP2HeaderValidation`): one
    /// relayed unchanged need not be checked again when sent.
    var checksResponseBlocks: Bool { get }
}

/// What an `HTTP2Upstream` tells its exchange, by direct calls on the shared loop, in order:
/// one final head, data, optional trailers (or `endStream` on data or the head), or one failure.
protocol HTTP2UpstreamOwner: AnyObject {
    func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool)
    func upstreamData(_ data: ByteBuffer, endStream: Bool)
    func upstreamTrailers(_ trailers: HPACKHeaders)
    func upstreamFailed(_ failure: HTTP2StreamFailure)
    func upstreamWritabilityChanged(_ writable: Bool)
    func upstreamReadComplete()
}
