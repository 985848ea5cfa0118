import NIOHTTP2

/// One stream's flow-control state as a frame-mode connection handler keeps it (both sides):
/// its receive window and whether it is given back, and its written bytes not yet on the wire.
struct HTTP2StreamFlow {
    /// The stream's receive window as NIOHTTP2 last reported it.
    var inboundWindow: Int
    /// The stream's reader cannot take more now: no window is given back.
    var readsPaused = false
    /// Bytes written to the connection, not yet on the wire.
    var unsentBytes = 0
    var writable = true

    init(inboundWindow: Int) {
        self.inboundWindow = inboundWindow
    }

    /// NIOHTTP2 reported the window (and whether the reader is paused): the increment to send.
    mutating func windowChanged(to window: Int, paused: Bool? = nil, target: Int) -> Int? {
        inboundWindow = window
        if let paused { readsPaused = paused }
        return topUp(to: target)
    }

    /// The increment that tops the window up to `target` once it is at half, unless paused.
    mutating func topUp(to target: Int) -> Int? {
        guard !readsPaused, inboundWindow <= target / 2 else { return nil }
        let increment = target - inboundWindow
        inboundWindow = target
        return increment
    }

    /// Paused or resumed: on resume, the window it held back.
    mutating func setReadsPaused(_ paused: Bool, target: Int) -> Int? {
        guard readsPaused != paused else { return nil }
        readsPaused = paused
        return topUp(to: target)
    }

    /// False when these bytes just made it stop being writable.
    mutating func wrote(_ bytes: Int, highWatermark: Int) -> Bool? {
        unsentBytes += bytes
        guard writable, unsentBytes >= highWatermark else { return nil }
        writable = false
        return false
    }

    /// True when these bytes leaving just made it writable again.
    mutating func left(_ bytes: Int, lowWatermark: Int) -> Bool? {
        unsentBytes -= bytes
        guard !writable, unsentBytes <= lowWatermark else { return nil }
        writable = true
        return true
    }
}

/// A stream-table entry of a frame-mode connection's state machine (either side): its flow.
protocol HTTP2FlowControlledEntry {
    var flow: HTTP2StreamFlow { get set }
}

/// A frame-mode connection's state machine (either side): its stream table and the watermarks
/// of its writes. The write accounting is the same for both.
protocol HTTP2StreamTableStateMachine {
    associatedtype Entry: HTTP2FlowControlledEntry
    var streams: [HTTP2StreamID: Entry] { get set }
    var highWatermark: Int { get }
    var lowWatermark: Int { get }
}

extension HTTP2StreamTableStateMachine {
    /// Bytes written on `id` (a request body upstream, a response downstream): false when the
    /// stream just stopped being writable.
    mutating func wroteData(_ id: HTTP2StreamID, bytes: Int) -> Bool? {
        let highWatermark = highWatermark
        return streams[id]?.flow.wrote(bytes, highWatermark: highWatermark)  // one lookup, in place
    }

    /// Bytes of `id` reached the wire (or were dropped): true when the stream just became
    /// writable again.
    mutating func dataLeft(_ id: HTTP2StreamID, bytes: Int) -> Bool? {
        let lowWatermark = lowWatermark
        return streams[id]?.flow.left(bytes, lowWatermark: lowWatermark)
    }

    func isWritable(_ id: HTTP2StreamID) -> Bool {
        streams[id]?.flow.writable ?? false
    }
}
