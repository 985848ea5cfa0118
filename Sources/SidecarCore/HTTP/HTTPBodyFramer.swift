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
    }

    private enum State: Sendable {
        case remaining(Int)
        case chunked(HTTPChunkedStateMachine)
        case untilClose
        case complete
    }

    private var state: State

    public init(framing: HTTPBodyFraming, limits: Limits = Limits()) {
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
        let progress = try consume(buffer)
        let body = progress.bodyBytes > 0 ? buffer.readSlice(length: progress.bodyBytes) : nil
        return (body, progress.isComplete)
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
            let n = try machine.consume(raw)
            state = machine.isDone ? .complete : .chunked(machine)
            return Progress(bodyBytes: n, isComplete: machine.isDone)
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
