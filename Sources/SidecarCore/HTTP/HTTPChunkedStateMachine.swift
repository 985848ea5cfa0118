/// Validates a chunked body (RFC 9112 §7.1) byte by byte as it streams past, so that the raw
/// chunked bytes can be relayed unchanged while we still know exactly where the message ends.
///
/// Holds a few integers, never the bytes: chunk data is skipped in bulk, chunk-size lines and
/// the trailer section are checked byte by byte with bounded lengths. Strict: the size line is
/// `1*HEXDIG [ ";" ext ] CRLF` with no whitespace before `;`, extensions may not contain
/// controls other than HTAB, every chunk's data must be followed by CRLF, trailer lines are
/// `token ":" value CRLF` without obs-fold, and every line ends in CRLF.
struct HTTPChunkedStateMachine: Sendable, Hashable {
    enum State: Sendable, Hashable {
        case sizeStart
        case size
        case chunkExtension
        case sizeLF
        case data
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerName
        case trailerValue
        case trailerLF
        case finalLF
        case done
    }

    /// At most this many hex digits in a chunk size (leading zeros included).
    static let maxSizeDigits = 32

    let maxExtensionLength: Int
    let maxTrailerSize: Int
    private(set) var state: State = .sizeStart
    private var size = 0
    private var sizeDigits = 0
    private var extensionLength = 0
    private var trailerSize = 0

    init(maxExtensionLength: Int, maxTrailerSize: Int) {
        self.maxExtensionLength = maxExtensionLength
        self.maxTrailerSize = maxTrailerSize
    }

    var isDone: Bool { state == .done }

    /// Between the last chunk's size line and the end of the message.
    var isInTrailerSection: Bool {
        switch state {
        case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .finalLF: return true
        default: return false
        }
    }

    /// Where, in the bytes of the latest `consume` call, the trailer section began (just after
    /// the `0` size line); nil when it began in another call or not yet.
    private(set) var trailerSectionStart: Int?

    /// Consumes bytes from the front of `raw` up to the end of the message; returns how many.
    mutating func consume(_ raw: UnsafeRawBufferPointer) throws(HTTPParserError) -> Int {
        var i = 0
        trailerSectionStart = nil
        while i < raw.count {
            switch state {
            case .done:
                return i
            case .data:
                let n = min(size, raw.count - i)
                i += n
                size -= n
                if size == 0 { state = .dataCR }
            case .sizeLF:
                try step(raw[i])
                i += 1
                if state == .trailerLineStart { trailerSectionStart = i }
            default:
                try step(raw[i])
                i += 1
            }
        }
        return i
    }

    private mutating func step(_ b: UInt8) throws(HTTPParserError) {
        switch state {
        case .sizeStart:
            guard let digit = HTTPGrammar.hexValue(b) else { throw .invalidChunkSize }
            size = Int(digit)
            sizeDigits = 1
            state = .size
        case .size:
            if let digit = HTTPGrammar.hexValue(b) {
                sizeDigits += 1
                guard size <= (Int.max >> 4), sizeDigits <= Self.maxSizeDigits else { throw .chunkSizeOverflow }
                size = size << 4 | Int(digit)
            } else if b == HTTPGrammar.semicolon {
                extensionLength = 0
                state = .chunkExtension
            } else if b == HTTPGrammar.cr {
                state = .sizeLF
            } else {
                throw .invalidChunkSize
            }
        case .chunkExtension:
            if b == HTTPGrammar.cr {
                state = .sizeLF
            } else if HTTPGrammar.isFieldValueByte(b) {
                extensionLength += 1
                guard extensionLength <= maxExtensionLength else { throw .chunkExtensionTooLong }
            } else {
                throw .invalidChunkExtension
            }
        case .sizeLF:
            guard b == HTTPGrammar.lf else { throw .invalidChunkSize }
            if size == 0 {
                trailerSize = 0
                state = .trailerLineStart
            } else {
                state = .data
            }
        case .dataCR:
            guard b == HTTPGrammar.cr else { throw .missingChunkDataTerminator }
            state = .dataLF
        case .dataLF:
            guard b == HTTPGrammar.lf else { throw .missingChunkDataTerminator }
            state = .sizeStart
        case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .finalLF:
            trailerSize += 1
            guard trailerSize <= maxTrailerSize else { throw .trailersTooLarge }
            try trailerStep(b)
        case .data, .done:
            preconditionFailure("bulk states are handled by consume")
        }
    }

    private mutating func trailerStep(_ b: UInt8) throws(HTTPParserError) {
        switch state {
        case .trailerLineStart:
            if b == HTTPGrammar.cr {
                state = .finalLF
            } else if HTTPGrammar.isTokenByte(b) {
                state = .trailerName
            } else {
                throw .invalidTrailer  // obs-fold, empty name, controls
            }
        case .trailerName:
            if b == HTTPGrammar.colon {
                state = .trailerValue
            } else if !HTTPGrammar.isTokenByte(b) {
                throw .invalidTrailer
            }
        case .trailerValue:
            if b == HTTPGrammar.cr {
                state = .trailerLF
            } else if !HTTPGrammar.isFieldValueByte(b) {
                throw .invalidTrailer
            }
        case .trailerLF:
            guard b == HTTPGrammar.lf else { throw .invalidTrailer }
            state = .trailerLineStart
        case .finalLF:
            guard b == HTTPGrammar.lf else { throw .invalidTrailer }
            state = .done
        default:
            preconditionFailure("not a trailer state")
        }
    }
}
