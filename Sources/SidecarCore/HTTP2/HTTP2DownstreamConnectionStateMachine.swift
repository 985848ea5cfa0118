import NIOCore
import NIOHTTP2

/// The decisions of one downstream HTTP/2 connection (a caller's) driven in frame mode
/// (`HTTP2DownstreamConnection`): which exchange a frame belongs to, whether a new stream is
/// taken, how much receive window to give back, and when a stream's response may take more.
/// Pure: it holds each stream's exchange as an opaque `Stream` and returns what to do; the
/// handler does it.
///
/// Streams. A HEADERS frame of an id not in the table opens a stream (its exchange), unless
/// `maxStreams` are open: then it is refused (REFUSED_STREAM, safe for the caller to retry). A
/// stream leaves the table when NIOHTTP2 closes it (both ends done, or reset either way), or
/// with the connection.
///
/// Drain (RFC 9113 §6.8, as gRPC servers do it): a GOAWAY with the largest stream id and a PING
/// first (the caller may have opened streams it sent before it saw the GOAWAY); at the PING's
/// ack a second GOAWAY with the last stream id opened (NIOHTTP2 ignores later ones), and the
/// connection closes once the streams it let in are closed. Idle: a connection with no stream
/// for `idleTimeout` drains too (checked by one timer per connection, not one per idle period:
/// the table records when it last emptied, the timer looks at that).
///
/// Malformed requests (RFC 9113 §8.1.1; NIOHTTP2's checks are off): a head or trailers that
/// `HTTP2HeaderValidation` refuses, or a body that does not add up to the head's
/// `content-length`, is reset with PROTOCOL_ERROR; a malformed head opens no stream.
///
/// Flow control. In frame mode NIOHTTP2 sends no WINDOW_UPDATE at all, so this does, from the
/// inbound windows NIOHTTP2 reports after every DATA frame (`NIOHTTP2WindowUpdatedEvent`):
/// - a stream's window is topped up to `streamWindow` once it falls to half, but only while its
///   exchange takes more request (`paused == false`: its upstream stream is writable, so the
///   bytes went onward). A paused stream's window runs out and the caller stops sending on it:
///   a slow upstream makes the sidecar hold at most one window per stream.
/// - the connection window is opened to `connectionWindow` at the first frame and topped up at
///   half, on receipt: every stream's share of it is already bounded by its own window.
///
/// Responses: a stream stops being writable once `highWatermark` bytes written to it are not
/// yet on the wire (the caller's window is closed, or the socket is full), and is writable
/// again at `lowWatermark`; its exchange then stops (resumes) reading its upstream.
struct HTTP2DownstreamConnectionStateMachine<Stream: AnyObject>: HTTP2StreamTableStateMachine {
    struct Entry: HTTP2FlowControlledEntry {
        let stream: Stream
        var flow: HTTP2StreamFlow
        /// The caller sent END_STREAM: no more request data, so no window to give back (NIOHTTP2
        /// refuses a WINDOW_UPDATE on a stream half-closed by the peer).
        var requestEnded = false
        /// Request body bytes still to come, when the head gave a `content-length`.
        var remainingBody: Int?

        /// DATA of `bytes` on the stream: its exchange, or malformed when the body outgrows its
        /// `content-length` or ends short of it (RFC 9113 §8.1.1).
        mutating func receivedData(bytes: Int, endStream: Bool) -> DataReceipt {
            if endStream { requestEnded = true }
            if let remaining = remainingBody {
                remainingBody = remaining - bytes
                guard remaining >= bytes, !endStream || remaining == bytes else { return .malformed }
            }
            return .deliver(stream)
        }

        mutating func windowChanged(to window: Int, paused: Bool, target: Int) -> Int? {
            requestEnded ? nil : flow.windowChanged(to: window, paused: paused, target: target)
        }

        mutating func readsResumed(target: Int) -> Int? {
            requestEnded ? nil : flow.setReadsPaused(false, target: target)
        }
    }

    /// What a HEADERS frame means.
    enum Headers: Equatable {
        /// A new stream, now in the table: its exchange begins with this head.
        case opened(Stream)
        /// The head of a stream already open: request trailers for its exchange.
        case existing(Stream)
        /// Over the limit: reset it with REFUSED_STREAM (never processed, safe to retry).
        case refused
        /// Malformed (RFC 9113 §8.1.1, `HTTP2HeaderValidation`): reset it with PROTOCOL_ERROR. A new
        /// stream is not opened; an open one's exchange ends when NIOHTTP2 closes it for the reset.
        case malformed

        static func == (lhs: Self, rhs: Self) -> Bool {
            switch (lhs, rhs) {
            case (.refused, .refused), (.malformed, .malformed): return true
            case (.opened(let a), .opened(let b)), (.existing(let a), .existing(let b)): return a === b
            default: return false
            }
        }
    }

    /// What a DATA frame means.
    enum DataReceipt: Equatable {
        /// For this stream's exchange.
        case deliver(Stream)
        /// The body does not match the head's `content-length`: reset it with PROTOCOL_ERROR.
        case malformed

        static func == (lhs: Self, rhs: Self) -> Bool {
            switch (lhs, rhs) {
            case (.malformed, .malformed): return true
            case (.deliver(let a), .deliver(let b)): return a === b
            default: return false
            }
        }
    }

    let maxStreams: Int
    let streamWindow: Int
    let connectionWindow: Int
    let highWatermark: Int
    let lowWatermark: Int
    /// Settable for the shared write accounting (`HTTP2StreamTableStateMachine`) only.
    var streams: [HTTP2StreamID: Entry] = [:]
    /// The first frame came: the connection window is open.
    private(set) var connectionWindowOpened = false
    private(set) var drain = Drain.serving
    /// The highest stream id opened: the second GOAWAY's last stream id.
    private(set) var lastStreamID = HTTP2StreamID.rootStream
    /// When the table last became empty; nil while a stream is open.
    private(set) var idleSince: NIODeadline?

    /// Where a drain stands.
    enum Drain: Equatable {
        case serving
        /// GOAWAY (largest id) and PING sent: the caller may still open streams it sent before.
        case announced
        /// The second GOAWAY (the last stream id opened) sent: closes once its streams are closed.
        case closing
    }

    /// The payload of the drain's PING (its ack is told apart from a keepalive's by it).
    static var drainPing: HTTP2PingData { HTTP2PingData(withInteger: 0x6D65_7368_6472_6169) }  // "meshdrai"

    /// `now`: when the connection opened (idle from then until its first stream).
    init(
        maxStreams: Int, streamWindow: Int, connectionWindow: Int, highWatermark: Int = 64 * 1024, lowWatermark: Int = 16 * 1024,
        now: NIODeadline = .uptimeNanoseconds(0)
    ) {
        self.maxStreams = maxStreams
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.idleSince = now
    }

    // MARK: Streams

    /// The first frame from the caller: the connection WINDOW_UPDATE to send (from the
    /// protocol's 65,535 to `connectionWindow`), once.
    mutating func receivedFrame() -> Int? {
        guard !connectionWindowOpened else { return nil }
        connectionWindowOpened = true
        let increment = connectionWindow - 65_535
        return increment > 0 ? increment : nil
    }

    /// HEADERS on `id`: `check` checks the block as a request's head or as trailers; `make`
    /// builds the exchange of a stream that opens. A head whose `content-length` its body does
    /// not match (no body at all, or trailers too early) is malformed too.
    mutating func receivedHeaders(
        _ id: HTTP2StreamID, endStream: Bool, check: (HTTP2HeaderValidation.Block) -> HTTP2HeaderValidation.Summary?,
        make: () -> Stream
    ) -> Headers {
        if let entry = streams[id] {
            guard check(.trailers) != nil, entry.remainingBody ?? 0 == 0 else { return .malformed }
            if endStream { streams[id]?.requestEnded = true }
            return .existing(entry.stream)
        }
        guard streams.count < maxStreams else { return .refused }
        guard let head = check(.request), !endStream || head.contentLength ?? 0 == 0 else { return .malformed }
        let stream = make()
        var entry = Entry(stream: stream, flow: HTTP2StreamFlow(inboundWindow: streamWindow))
        entry.requestEnded = endStream
        entry.remainingBody = head.contentLength
        streams[id] = entry
        if id > lastStreamID { lastStreamID = id }
        idleSince = nil
        return .opened(stream)
    }

    /// DATA of `bytes` on `id`: nil when the stream is not (or no longer) in the table.
    mutating func receivedData(_ id: HTTP2StreamID, bytes: Int, endStream: Bool) -> DataReceipt? {
        streams[id]?.receivedData(bytes: bytes, endStream: endStream)
    }

    func stream(_ id: HTTP2StreamID) -> Stream? {
        streams[id]?.stream
    }

    /// NIOHTTP2 closed `id` (both ends done, or reset either way): its exchange, gone from the
    /// table. `now` is read only when that leaves the table empty.
    mutating func streamClosed(_ id: HTTP2StreamID, now: @autoclosure () -> NIODeadline) -> Stream? {
        guard let entry = streams.removeValue(forKey: id) else { return nil }
        if streams.isEmpty { idleSince = now() }
        return entry.stream
    }

    // MARK: Drain and idle

    /// Drain begins (the sidecar drains, or the connection idled out): true when the GOAWAY with
    /// the largest id and the drain's PING go out now (once).
    mutating func beginDrain() -> Bool {
        guard drain == .serving else { return false }
        drain = .announced
        return true
    }

    /// A PING ack: the last stream id for the second GOAWAY when it acks the drain's PING.
    mutating func receivedPingAck(_ data: HTTP2PingData) -> HTTP2StreamID? {
        guard drain == .announced, data == Self.drainPing else { return nil }
        drain = .closing
        return lastStreamID
    }

    /// The second GOAWAY went out and no stream is left: close the connection.
    var shouldClose: Bool { drain == .closing && streams.isEmpty }

    /// What the connection's idle timer does when it fires at `now`.
    enum IdleCheck: Equatable {
        /// Idle for `idleTimeout`: drain.
        case drain
        /// Look again then (the earliest the connection can have been idle that long).
        case checkAgain(at: NIODeadline)
        /// Draining already: no more checks.
        case stop
    }

    func idleCheck(now: NIODeadline, idleTimeout: TimeAmount) -> IdleCheck {
        guard drain == .serving else { return .stop }
        guard let since = idleSince else { return .checkAgain(at: now + idleTimeout) }
        return since + idleTimeout <= now ? .drain : .checkAgain(at: since + idleTimeout)
    }

    /// The connection closed: every exchange left.
    mutating func connectionClosed() -> [Stream] {
        let left = streams.values.map(\.stream)
        streams = [:]
        return left
    }

    // MARK: Flow control

    /// NIOHTTP2's report of the connection's receive window: the WINDOW_UPDATE increment to send.
    func connectionWindowChanged(inbound window: Int) -> Int? {
        guard window <= connectionWindow / 2 else { return nil }
        return connectionWindow - window
    }

    /// NIOHTTP2's report of a stream's receive window, with whether its exchange takes more
    /// request now: the WINDOW_UPDATE increment to send.
    mutating func streamWindowChanged(_ id: HTTP2StreamID, inbound window: Int, paused: Bool) -> Int? {
        guard let entry = streams[id], !entry.requestEnded else { return nil }
        let target = streamWindow
        return streams[id]?.windowChanged(to: window, paused: paused, target: target)
    }

    /// The exchange takes request frames again: the window it held back.
    mutating func readsResumed(_ id: HTTP2StreamID) -> Int? {
        // Read first: usually nothing changes (the request ended, or reads were never paused),
        // and changing an entry in place costs ~900 instructions (Dictionary's modify coroutine).
        guard let entry = streams[id], !entry.requestEnded, entry.flow.readsPaused else { return nil }
        let target = streamWindow
        return streams[id]?.readsResumed(target: target)
    }
}
