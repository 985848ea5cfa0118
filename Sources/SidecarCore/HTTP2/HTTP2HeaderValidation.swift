import NIOHPACK

/// The rules of RFC 9113 §8.2–8.3 for one HTTP/2 header block, the ones NIOHTTP2 checks with
/// `headerBlockValidation` (which is off on every connection, `HTTP2Settings`): the frame-mode
/// connection handlers check every block they receive and every block they send, once, here
/// (a response block relayed as an upstream connection received and checked it is not checked
/// again).
///
/// - Field names are lowercase tokens; a pseudo-header is one of the block's kind
///   (`:method :scheme :authority :path` in a request, `:status` in a response, none in
///   trailers; `:protocol` is refused, as extended CONNECT is not offered), at most once, and
///   before every regular field.
/// - A request has `:method`, `:scheme` and `:path` (`:path` not empty), or is a CONNECT with
///   `:method` and `:authority` only; a response has `:status`.
/// - No connection-specific field (`connection`, `keep-alive`, `proxy-connection`,
///   `transfer-encoding`, `upgrade`), and a request's `te` is `trailers`.
/// - No NUL, CR or LF in a value; no control, space or DEL in a pseudo-header's value.
/// - `content-length` is digits (several fields, or a list, must agree); the connections' state
///   machines hold each received body to it (NIOHTTP2's `contentLengthValidation` is off too).
///
/// NIOHTTP2 does this in several passes per field through `Substring` and `String` compares,
/// both directions on every connection (16 % of the pair path's instructions per request); this
/// is one pass over each field's bytes. Pure; a block is valid or not (the handler resets the
/// stream with PROTOCOL_ERROR, as NIOHTTP2 did). A request forwarded upstream is a caller's
/// checked block with the hop's changes (`HTTP2Headers.request`): only the changes are checked
/// (`areValidAdditions`), so every field sent was still checked once, by the same rules.
enum HTTP2HeaderValidation {
    enum Block {
        case request
        case response
        case trailers
    }

    /// What a well-formed block says about the body after it (RFC 9113 §8.1.1: a message whose
    /// DATA does not add up to its `content-length` is malformed too).
    struct Summary: Equatable {
        /// `content-length`, when the block has one (several must agree, as must a list in one).
        var contentLength: Int?
        /// A request's `:method` is HEAD: its response has no body, whatever its length says.
        var isHEAD = false
        /// A response's `:status` is 304: no body either.
        var isNotModified = false
    }

    /// The block checked: nil when malformed.
    static func check(_ headers: HPACKHeaders, as block: Block) -> Summary? {
        var checker = Checker(block: block)
        for (name, value, _) in headers {
            var name = name
            var value = value
            let valid = name.withUTF8 { name in value.withUTF8 { value in checker.field(name, value) } }
            guard valid else { return nil }
        }
        return checker.isComplete ? checker.summary : nil
    }

    static func isValid(_ headers: HPACKHeaders, as block: Block) -> Bool {
        check(headers, as: block) != nil
    }

    /// What `HTTP2Headers.request` puts into a request block checked as received: `path` as
    /// `:path`, an added `host` as `:authority` (pseudo-header values: no control, space or DEL;
    /// `:path` not empty), the other `added` lines as regular fields after the block's own (names
    /// lowercased). The fields it keeps are the checked block's, in its order (pseudo-headers
    /// first, none removed), so the block is valid when these are. An `HTTPHeaderLine` is a token
    /// name and a value without CR, LF, NUL or other controls already (checked when it was made,
    /// or made by the sidecar from bytes it knows), so what is left are the names HTTP/2 forbids
    /// (and `te` other than `trailers`). False for a `content-length` among them as well (the
    /// block's length is checked whole then).
    static func areValidAdditions(path: String?, added: [HTTPHeaderLine]) -> Bool {
        if var path {
            guard !path.isEmpty, path.withUTF8({ Self.isValidPseudoValue($0) }) else { return false }
        }
        for line in added {
            var value = line.value
            if line.name == "host" {
                guard value.withUTF8({ Self.isValidPseudoValue($0) }) else { return false }
                continue
            }
            switch line.name.utf8.count {
            case 2, 7, 10, 14, 16, 17: break  // the lengths of the names below: any other passes
            default: continue
            }
            var name = HTTP2Headers.lowercased(line.name)
            let allowed = name.withUTF8 { name in
                value.withUTF8 { value in
                    !Self.equals(name, "content-length") && !Self.isConnectionSpecific(name, value, inRequest: true)
                }
            }
            guard allowed else { return false }
        }
        return true
    }

    /// A regular field HTTP/2 forbids (RFC 9113 §8.2.2): a connection-specific name, or a
    /// request's `te` other than `trailers`. `name` in lowercase, as HTTP/2 sends it.
    @inline(__always)
    private static func isConnectionSpecific(
        _ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>, inRequest: Bool
    ) -> Bool {
        switch name.count {
        case 2: return inRequest && equals(name, "te") && !equals(value, "trailers")
        case 7: return equals(name, "upgrade")
        case 10: return equals(name, "connection") || equals(name, "keep-alive")
        case 16: return equals(name, "proxy-connection")
        case 17: return equals(name, "transfer-encoding")
        default: return false
        }
    }

    /// No control byte, space or DEL.
    static func isValidPseudoValue(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
        for byte in value where byte <= 0x20 || byte == 0x7F { return false }
        return true
    }

    /// The pseudo-headers a block has seen, as bits.
    private struct Pseudo: OptionSet {
        let rawValue: UInt8
        static let method = Pseudo(rawValue: 1)
        static let scheme = Pseudo(rawValue: 2)
        static let authority = Pseudo(rawValue: 4)
        static let path = Pseudo(rawValue: 8)
        static let status = Pseudo(rawValue: 16)
    }

    private struct Checker {
        let block: Block
        var seen: Pseudo = []
        var regular = false
        var isConnect = false
        var summary = Summary()

        init(block: Block) {
            self.block = block
        }

        mutating func field(_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Bool {
            guard let first = name.first else { return false }
            if first == UInt8(ascii: ":") {
                guard !regular, let pseudo = pseudoHeader(name), !seen.contains(pseudo) else { return false }
                seen.insert(pseudo)
                guard HTTP2HeaderValidation.isValidPseudoValue(value) else { return false }
                if pseudo == .method {
                    isConnect = HTTP2HeaderValidation.equals(value, "CONNECT")
                    summary.isHEAD = HTTP2HeaderValidation.equals(value, "HEAD")
                }
                if pseudo == .status { summary.isNotModified = HTTP2HeaderValidation.equals(value, "304") }
                if pseudo == .path && value.isEmpty { return false }
                return true
            }
            regular = true
            for byte in name where !HTTP2HeaderValidation.isLowercaseTokenByte(byte) { return false }
            if HTTP2HeaderValidation.equals(name, "content-length") {
                guard let length = HTTP2HeaderValidation.contentLength(value), summary.contentLength ?? length == length else {
                    return false
                }
                summary.contentLength = length
            } else if HTTP2HeaderValidation.isConnectionSpecific(name, value, inRequest: block == .request) {
                return false
            }
            return !HTTP2HeaderValidation.hasNULCROrLF(value)
        }

        /// `name` (with its colon) as one of this block's pseudo-headers, or nil.
        private func pseudoHeader(_ name: UnsafeBufferPointer<UInt8>) -> Pseudo? {
            switch block {
            case .request:
                if HTTP2HeaderValidation.equals(name, ":method") { return .method }
                if HTTP2HeaderValidation.equals(name, ":scheme") { return .scheme }
                if HTTP2HeaderValidation.equals(name, ":authority") { return .authority }
                if HTTP2HeaderValidation.equals(name, ":path") { return .path }
                return nil
            case .response:
                return HTTP2HeaderValidation.equals(name, ":status") ? .status : nil
            case .trailers:
                return nil
            }
        }

        /// Every pseudo-header the block's kind requires is there, and no other.
        var isComplete: Bool {
            switch block {
            case .request:
                return isConnect ? seen == [.method, .authority] : seen.isSuperset(of: [.method, .scheme, .path])
            case .response:
                return seen == .status
            case .trailers:
                return seen.isEmpty
            }
        }
    }

    /// A lowercase `tchar` (RFC 9110 §5.6.2 without `A`–`Z`), as bits of the bytes 0–63 and 64–127.
    @inline(__always)
    static func isLowercaseTokenByte(_ byte: UInt8) -> Bool {
        if byte < 64 { return (0x03FF_6CFA_0000_0000 as UInt64) >> byte & 1 != 0 }
        return byte < 128 && (0x57FF_FFFF_C000_0000 as UInt64) >> (byte &- 64) & 1 != 0
    }

    /// A `content-length` value: decimal digits, or a comma-separated list of equal ones (as
    /// NIOHTTP2 reads it); nil when malformed.
    static func contentLength(_ value: UnsafeBufferPointer<UInt8>) -> Int? {
        var length: Int?
        var start = 0
        while start <= value.count {
            var end = start
            while end < value.count && value[end] != UInt8(ascii: ",") { end += 1 }
            var low = start
            var high = end
            while low < high && HTTPGrammar.isWhitespace(value[low]) { low += 1 }
            while high > low && HTTPGrammar.isWhitespace(value[high - 1]) { high -= 1 }
            guard low < high else { return nil }
            var number = 0
            for index in low..<high {
                let byte = value[index]
                guard HTTPGrammar.isDigit(byte) else { return nil }
                let (times, overflowed) = number.multipliedReportingOverflow(by: 10)
                let (sum, overflowedToo) = times.addingReportingOverflow(Int(byte &- UInt8(ascii: "0")))
                guard !overflowed && !overflowedToo else { return nil }
                number = sum
            }
            guard length ?? number == number else { return nil }
            length = number
            start = end + 1
        }
        return length
    }

    /// A field value's forbidden bytes, eight at a time: a word with no byte below 0x0E has none.
    @inline(__always)
    static func hasNULCROrLF(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        if let base = UnsafeRawPointer(value.baseAddress) {
            while index + 8 <= value.count
                && !HTTPGrammar.word(base.loadUnaligned(fromByteOffset: index, as: UInt64.self), hasByteBelow: 0x0E)
            {
                index += 8
            }
        }
        while index < value.count {
            // NUL, LF, CR: bits 0, 10 and 13.
            let byte = value[index]
            if byte <= 0x0D && (0x2401 as UInt16) >> byte & 1 != 0 { return true }
            index += 1
        }
        return false
    }

    @inline(__always)
    private static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        let expected = literal.utf8Start
        for index in 0..<bytes.count where bytes[index] != expected[index] { return false }
        return true
    }
}
