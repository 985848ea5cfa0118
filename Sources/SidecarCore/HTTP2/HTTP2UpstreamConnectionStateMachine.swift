import NIOHTTP2

/// The decisions of one upstream HTTP/2 connection driven in frame mode (`HTTP2UpstreamConnection`):
/// which of our streams a frame belongs to, when a stream is open, half-closed or gone, how much
/// receive window to give back, when a stream may take more request body, and which failures
/// are safe to retry. Pure: it holds each stream as an opaque `Stream` and returns what to do;
/// the handler does it. A response head or trailers that `HTTP2HeaderValidation` refuses, or a
/// body that does not add up to the head's `content-length` (none after a HEAD or a 304), is
/// malformed (RFC 9113 §8.1.1; NIOHTTP2's checks are off): the stream is reset and fails.
///
/// Flow control. In frame mode NIOHTTP2 sends no WINDOW_UPDATE at all, so this does, from the
/// inbound windows NIOHTTP2 reports after every DATA frame (`NIOHTTP2WindowUpdatedEvent`):
/// - a stream's window is topped up to `streamWindow` once it falls to half, but only while
///   its exchange takes more (`setReadsPaused(false)`: the caller's stream is writable, so the
///   bytes went onward). A paused stream's window runs out and its sender stops: a slow reader
///   holds at most one window per stream here.
/// - the connection window is topped up to `connectionWindow` at half, on receipt: every
///   stream's share of it is already bounded by its own window.
///
/// Request bodies: a stream stops being writable once `highWatermark` bytes it wrote are not yet
/// on the wire (the peer's window is closed, or the socket is full), and is writable again at
/// `lowWatermark`.
struct HTTP2UpstreamConnectionStateMachine<Stream: AnyObject>: HTTP2StreamTableStateMachine {
    struct Entry: HTTP2FlowControlledEntry {
        let stream: Stream
        /// We sent END_STREAM.
        var localClosed = false
        /// The peer's final (non-1xx) head arrived; later HEADERS are trailers.
        var sawFinalHead = false
        /// Receive window given back, request bytes not yet on the wire.
        var flow: HTTP2StreamFlow
        /// The request's method is HEAD: its response has no body.
        var isHEADRequest = false
        /// Response body bytes still to come, when the head gave a `content-length` (0 for a
        /// HEAD request's or a 304's).
        var remainingBody: Int?
    }

    enum State: Equatable {
        /// Connecting (TCP, TLS, preface): streams may be reserved, not started.
        case connecting
        case ready
        /// GOAWAY received, drain, an error, or stream ids used up: no new streams; closes when idle.
        case goingAway
        case closed
    }

    /// What a received HEADERS or DATA frame of one of our open streams means (a frame of any
    /// other stream, reset by us, refused or never ours, is dropped).
    enum Receive: Equatable {
        /// An informational (1xx) head: the sidecar takes the whole request body, nothing to relay.
        case informational
        /// The response head, body data or trailers for `stream`. `ended`: the stream's response is
        /// complete and the stream gone from the table. `resetAfter`: the request was not finished
        /// (the peer answered early): reset our side (CANCEL), which also frees the slot.
        case head(ended: Bool, resetAfter: Bool)
        case data(ended: Bool, resetAfter: Bool)
        case trailers(resetAfter: Bool)
        /// A malformed head or trailers (RFC 9113 §8.1.1, `HTTP2HeaderValidation`), or a body that
        /// does not match the head's `content-length`: the stream is gone from the table; reset it
        /// with PROTOCOL_ERROR and fail its exchange.
        case malformed
    }

    /// How a stream ended before its response did.
    enum Failure: Equatable {
        /// Never processed by the peer (REFUSED_STREAM, past a GOAWAY's last stream id, or never
        /// sent): always safe to send again.
        case refused
        /// Reset with this code, or closed (nil) mid-exchange.
        case reset(HTTP2ErrorCode?)
    }

    let streamWindow: Int
    let connectionWindow: Int
    let highWatermark: Int
    let lowWatermark: Int
    private(set) var state = State.connecting
    /// Settable for the shared write accounting (`HTTP2StreamTableStateMachine`) only.
    var streams: [HTTP2StreamID: Entry] = [:]
    /// Streams handed out (counted against the limit) that have not sent their head yet.
    private(set) var reserved = 0
    /// At most this many streams at once: ours, or less if the peer's SETTINGS say so.
    private(set) var streamLimit: Int
    private let maxStreams: Int
    private var nextStreamID = HTTP2StreamID(1)

    init(maxStreams: Int, streamWindow: Int, connectionWindow: Int, highWatermark: Int = 64 * 1024, lowWatermark: Int = 16 * 1024) {
        self.maxStreams = maxStreams
        self.streamLimit = maxStreams
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
    }

    /// May take another stream now (or once connected).
    var hasRoom: Bool {
        (state == .ready || state == .connecting) && reserved + streams.count < streamLimit
    }

    var isIdle: Bool { reserved == 0 && streams.isEmpty }

    /// Closed by us once no stream is left on a connection that takes no new ones.
    var shouldClose: Bool { state == .goingAway && isIdle }

    // MARK: Opening

    /// Counts a stream against the limit before it starts (its head may wait for the connection).
    mutating func reserve() {
        reserved += 1
    }

    /// The connection is up: the initial connection WINDOW_UPDATE to send (from the protocol's
    /// 65,535 to `connectionWindow`), if any.
    mutating func connected() -> Int? {
        guard state == .connecting else { return nil }
        state = .ready
        let increment = connectionWindow - 65_535
        return increment > 0 ? increment : nil
    }

    /// The reserved `stream` sends its head: its id, or nil when the connection no longer takes
    /// streams (then the stream never reached the peer: `.refused`).
    mutating func start(_ stream: Stream) -> HTTP2StreamID? {
        reserved -= 1
        guard state == .ready else { return nil }
        let id = nextStreamID
        streams[id] = Entry(stream: stream, flow: HTTP2StreamFlow(inboundWindow: streamWindow))
        if Int(id) >= Int(Int32.max) - 2 {
            state = .goingAway  // ids used up: the next stream goes on another connection
        } else {
            nextStreamID = HTTP2StreamID(Int(id) + 2)
        }
        return id
    }

    /// A reserved stream given up before it started.
    mutating func unreserve() {
        reserved -= 1
    }

    /// The request on `id` is a HEAD: its response has no body, whatever its `content-length`.
    mutating func sentHEAD(_ id: HTTP2StreamID) {
        streams[id]?.isHEADRequest = true
    }

    /// We sent END_STREAM on `id`.
    mutating func sentEndStream(_ id: HTTP2StreamID) {
        streams[id]?.localClosed = true
    }

    // MARK: Receiving

    /// HEADERS on `id`: `informational` when its `:status` is 1xx; `check` checks the block as
    /// a response's head or as trailers. A body that ends short of the head's `content-length`
    /// (at a head with END_STREAM, or at trailers) is malformed too.
    mutating func receivedHeaders(
        _ id: HTTP2StreamID, endStream: Bool, informational: Bool,
        check: (HTTP2HeaderValidation.Block) -> HTTP2HeaderValidation.Summary?
    ) -> (Stream, Receive)? {
        guard var entry = streams[id] else { return nil }
        guard let summary = check(entry.sawFinalHead ? .trailers : .response) else {
            streams[id] = nil
            return (entry.stream, .malformed)
        }
        if entry.sawFinalHead {
            streams[id] = nil
            guard entry.remainingBody ?? 0 == 0 else { return (entry.stream, .malformed) }
            return (entry.stream, .trailers(resetAfter: !entry.localClosed))
        }
        if informational && !endStream { return (entry.stream, .informational) }
        entry.sawFinalHead = true
        entry.remainingBody = entry.isHEADRequest || summary.isNotModified ? 0 : summary.contentLength
        if endStream {
            streams[id] = nil
            guard entry.remainingBody ?? 0 == 0 else { return (entry.stream, .malformed) }
        } else {
            streams[id] = entry
        }
        return (entry.stream, .head(ended: endStream, resetAfter: endStream && !entry.localClosed))
    }

    /// DATA of `bytes` on `id`; malformed when the body outgrows the head's `content-length` or
    /// ends short of it.
    mutating func receivedData(_ id: HTTP2StreamID, bytes: Int, endStream: Bool) -> (Stream, Receive)? {
        // Data before a head is the peer's protocol error (NIOHTTP2 resets such streams).
        guard let entry = streams[id], entry.sawFinalHead else { return nil }
        if let remaining = entry.remainingBody {
            guard remaining >= bytes, !endStream || remaining == bytes else {
                streams[id] = nil
                return (entry.stream, .malformed)
            }
            if !endStream { streams[id]?.remainingBody = remaining - bytes }
        }
        guard endStream else { return (entry.stream, .data(ended: false, resetAfter: false)) }
        streams[id] = nil
        return (entry.stream, .data(ended: true, resetAfter: !entry.localClosed))
    }

    /// RST_STREAM from the peer, or NIOHTTP2 closed the stream (a stream error it reset, or a
    /// close we did not see the end of): the stream to fail and how, or nil when not ours.
    mutating func streamClosed(_ id: HTTP2StreamID, code: HTTP2ErrorCode?) -> (Stream, Failure)? {
        guard let entry = streams.removeValue(forKey: id) else { return nil }
        return (entry.stream, code == .refusedStream ? .refused : .reset(code))
    }

    /// GOAWAY: no new streams here; streams above `lastStreamID` were never processed by the
    /// peer and are failed as refused (safe to retry), the others may finish.
    mutating func receivedGoAway(lastStreamID: HTTP2StreamID) -> [Stream] {
        if state != .closed { state = .goingAway }
        var refused: [Stream] = []
        for (id, entry) in streams where id > lastStreamID {
            refused.append(entry.stream)
            streams[id] = nil
        }
        return refused
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS from the peer (capped at ours).
    mutating func peerMaxConcurrentStreams(_ value: Int) {
        streamLimit = min(value, maxStreams)
    }

    /// Drain, or an error on the connection: no new streams; it closes once idle.
    mutating func stopTakingStreams() {
        if state == .ready || state == .connecting { state = .goingAway }
    }

    /// The connection closed: every stream left fails (`.reset(nil)`: it may have been processed).
    mutating func connectionClosed() -> [Stream] {
        state = .closed
        let left = streams.values.map(\.stream)
        streams = [:]
        return left
    }

    // MARK: Cancelling

    /// The exchange no longer wants `id`: true when RST_STREAM(CANCEL) is to be sent (it was
    /// still open here).
    mutating func cancel(_ id: HTTP2StreamID) -> Bool {
        streams.removeValue(forKey: id) != nil
    }

    // MARK: Flow control

    /// NIOHTTP2's report of the connection's receive window: the WINDOW_UPDATE increment to send.
    func connectionWindowChanged(inbound window: Int) -> Int? {
        guard state != .closed, window <= connectionWindow / 2 else { return nil }
        return connectionWindow - window
    }

    /// NIOHTTP2's report of a stream's receive window: the WINDOW_UPDATE increment to send.
    mutating func streamWindowChanged(_ id: HTTP2StreamID, inbound window: Int) -> Int? {
        let target = streamWindow
        return streams[id]?.flow.windowChanged(to: window, target: target)  // one lookup, in place
    }

    /// The exchange stops (or resumes) taking response data: on resume, the window it held back.
    mutating func setReadsPaused(_ id: HTTP2StreamID, _ paused: Bool) -> Int? {
        // Read first: usually nothing changes, and a change in place costs more than a lookup.
        guard let entry = streams[id], entry.flow.readsPaused != paused else { return nil }
        let target = streamWindow
        return streams[id]?.flow.setReadsPaused(paused, target: target)
    }
}
