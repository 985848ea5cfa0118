import NIOCore

/// Tells a byte-forwarding proxy which of the bytes after a head are that message's body and
/// where the next message starts, without buffering or copying any of it.
///
/// Offer it every read's bytes (`consume`); it answers how many of them, from the front, are
/// body (relay them as a slice, chunked framing included) and whether the message ended there,
/// in which case the rest of the buffer is the next (pipelined) head. Pure state machine.
public struct HTTPBodyFramer: Sendable {
    /// Bounds on the parts of a body we validate rather than skip.
    public struct Limits: Sendable, Hashable {
        public var maxChunkExtensionLength: Int
        public var maxTrailerSize: Int

        public init(maxChunkExtensionLength: Int = 4096, maxTrailerSize: Int = 16 * 1024) {
            self.maxChunkExtensionLength = maxChunkExtensionLength
            self.maxTrailerSize = maxTrailerSize
        }
    }

    /// What one `consume` found.
    public struct Progress: Sendable, Hashable {
        /// How many of the offered bytes, from the first, belong to this message's body.
        public var bodyBytes: Int
        /// The message ended after `bodyBytes`; any further bytes belong to the next message.
        public var isComplete: Bool
        /// With `holdsTrailers`, on the completing call: how many of the last `bodyBytes` are the
        /// chunked trailer section (its fields and the final CRLF; 2 when there are no fields).
        public var trailerSectionBytes: Int

        public init(bodyBytes: Int, isComplete: Bool, trailerSectionBytes: Int = 0) {
            self.bodyBytes = bodyBytes
            self.isComplete = isComplete
            self.trailerSectionBytes = trailerSectionBytes
        }
    }

    private enum State: Sendable {
        case remaining(Int)
        case chunked(HTTPChunkedStateMachine)
        case untilClose
        case complete
    }

    private var state: State
    /// Hold back a chunked body's trailer section until it is whole, so the caller can filter
    /// its fields (the request side removes identity fields a peer must not set). The held
    /// bytes stay in the caller's buffer, at most `Limits.maxTrailerSize` of them.
    private let holdsTrailers: Bool
    /// Bytes at the front of the next offer already scanned as trailer section but not yet reported.
    private var heldTrailerBytes = 0

    public init(framing: HTTPBodyFraming, limits: Limits = Limits(), holdsTrailers: Bool = false) {
        self.holdsTrailers = holdsTrailers
        switch framing {
        case .none, .contentLength(0):
            state = .complete
        case .contentLength(let length):
            state = .remaining(length)
        case .chunked:
            state = .chunked(
                HTTPChunkedStateMachine(
                    maxExtensionLength: limits.maxChunkExtensionLength,
                    maxTrailerSize: limits.maxTrailerSize))
        case .untilClose, .tunnel:
            state = .untilClose
        }
    }

    /// The whole body has been seen.
    public var isComplete: Bool {
        if case .complete = state { return true }
        return false
    }

    /// Looks at `buffer`'s readable bytes (without moving its reader index).
    public mutating func consume(_ buffer: ByteBuffer) throws(HTTPParserError) -> Progress {
        let result: Result<Progress, HTTPParserError> = buffer.withUnsafeReadableBytes { raw in
            do throws(HTTPParserError) {
                return .success(try self.consume(raw))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Reads this message's body bytes out of `buffer` as a slice sharing its storage (nil when
    /// none are there yet), leaving the next message's bytes in `buffer`.
    public mutating func readBody(from buffer: inout ByteBuffer) throws(HTTPParserError) -> (body: ByteBuffer?, isComplete: Bool) {
        let (body, progress) = try readBodyProgress(from: &buffer)
        return (body, progress.isComplete)
    }

    /// `readBody`, also telling how the trailer section ends the body (see `holdsTrailers`).
    public mutating func readBodyProgress(from buffer: inout ByteBuffer) throws(HTTPParserError) -> (body: ByteBuffer?, progress: Progress) {
        let progress = try consume(buffer)
        let body = progress.bodyBytes > 0 ? buffer.readSlice(length: progress.bodyBytes) : nil
        return (body, progress)
    }

    /// Looks at raw bytes that follow whatever was consumed before.
    public mutating func consume(_ raw: UnsafeRawBufferPointer) throws(HTTPParserError) -> Progress {
        switch state {
        case .complete:
            return Progress(bodyBytes: 0, isComplete: true)
        case .remaining(let remaining):
            let n = min(remaining, raw.count)
            if n == remaining {
                state = .complete
                return Progress(bodyBytes: n, isComplete: true)
            }
            state = .remaining(remaining - n)
            return Progress(bodyBytes: n, isComplete: false)
        case .chunked(var machine):
            // On a throw the state is left as it was: the connection cannot be framed any more.
            let held = min(heldTrailerBytes, raw.count)
            let n = try machine.consume(UnsafeRawBufferPointer(rebasing: raw[held...]))
            state = machine.isDone ? .complete : .chunked(machine)
            guard holdsTrailers, machine.isDone || machine.isInTrailerSection else {
                return Progress(bodyBytes: n, isComplete: machine.isDone)
            }
            let scanned = held + n
            // Held bytes are the section's start; otherwise it began in this call.
            let sectionStart = held > 0 ? 0 : (machine.trailerSectionStart ?? 0)
            if machine.isDone {
                heldTrailerBytes = 0
                return Progress(bodyBytes: scanned, isComplete: true, trailerSectionBytes: scanned - sectionStart)
            }
            heldTrailerBytes = scanned - sectionStart
            return Progress(bodyBytes: sectionStart, isComplete: false)
        case .untilClose:
            return Progress(bodyBytes: raw.count, isComplete: false)
        }
    }

    /// The peer closed its side: fine for read-until-close bodies, truncation for all others.
    public mutating func endOfInput() throws(HTTPParserError) {
        switch state {
        case .complete:
            return
        case .untilClose:
            state = .complete
        case .remaining, .chunked:
            throw .truncatedBody
        }
    }
}
