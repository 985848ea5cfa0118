import NIOCore
import NIOHTTP2

/// What an `HTTP2StreamExchange` answers its caller through: the caller's HTTP/2 connection
/// (`HTTP2DownstreamConnection`, frames written with the stream's id), or an HTTP/1.1 caller's
/// connection translated (`HTTP1ToHTTP2Adapter`). Called on the connection's loop only.
protocol HTTP2Downstream: AnyObject {
    /// Writes a frame of `stream`; nothing goes out before `flush`. `checked`: a header block
    /// relayed as it was received and checked (`HTTP2HeaderValidation`); others are checked here.
    func write(_ payload: HTTP2Frame.FramePayload, on stream: HTTP2StreamID, checked: Bool)
    func flush()
    /// The caller takes more of `stream`'s response now (else its upstream's reads are held).
    func isWritable(_ stream: HTTP2StreamID) -> Bool
    /// `stream`'s exchange takes request frames again (`wantsDownstreamFrames`): give back the
    /// window (or resume reading) it held back.
    func readsResumed(_ stream: HTTP2StreamID)
    /// Every request header block it hands an exchange was checked as received
    /// (`HTTP2HeaderValidation`): one forwarded with checked additions need not be checked whole again.
    var checksRequestBlocks: Bool { get }
}
