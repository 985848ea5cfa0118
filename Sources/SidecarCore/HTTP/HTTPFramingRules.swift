/// Collects the framing-relevant header values of one head and decides its `HTTPFraming`
/// (RFC 9112 §6, RFC 9110 §7.6.1), rejecting anything that two parsers could read differently.
///
/// Deliberately stricter than the RFCs allow a recipient to be, because we forward the original
/// bytes and the next hop must frame them exactly as we did:
/// - any second Content-Length (even identical, even as a list) is refused;
/// - Content-Length together with Transfer-Encoding is refused in requests and responses;
/// - Transfer-Encoding elements must be bare tokens (no empty elements, no parameters);
/// - a Connection header naming Content-Length, Transfer-Encoding or Host is refused, since
///   stripping those as hop-by-hop would re-frame the message.
/// Pure value; offsets are relative to the head's first byte.
struct HTTPFramingRules {
    private(set) var contentLength: Int?
    private var contentLengthCount = 0
    private var hasTransferEncoding = false
    private var codingCount = 0
    private var chunkedCount = 0
    private var lastIsChunked = false
    private var codingAfterChunked = false
    private var unknownCoding = false
    private var connectionClose = false
    private var connectionKeepAlive = false
    private var connectionUpgrade = false
    /// Names listed in Connection other than close/keep-alive/upgrade, as offsets into the head.
    private(set) var connectionListedNames: [Range<Int>] = []
    private var hostCount = 0
    private var expectContinue = false
    private var hasUpgrade = false

    /// Takes note of one header field. `value` is the whole head; `range` the trimmed value.
    mutating func add(_ known: HTTPKnownHeader, head: UnsafeRawBufferPointer, value range: Range<Int>) throws(HTTPParserError) {
        switch known {
        case .contentLength:
            contentLengthCount += 1
            guard contentLengthCount == 1 else { throw .duplicateContentLength }
            contentLength = try Self.parseContentLength(UnsafeRawBufferPointer(rebasing: head[range]))
        case .transferEncoding:
            hasTransferEncoding = true
            try Self.forEachElement(head, range, allowEmpty: false) { (element) throws(HTTPParserError) in
                try self.addCoding(UnsafeRawBufferPointer(rebasing: head[element]))
            }
        case .connection:
            try Self.forEachElement(head, range, allowEmpty: true) { (element) throws(HTTPParserError) in
                try self.addConnectionOption(UnsafeRawBufferPointer(rebasing: head[element]), at: element)
            }
        case .host:
            hostCount += 1
        case .expect:
            if HTTPGrammar.equalsLowercase(UnsafeRawBufferPointer(rebasing: head[range]), "100-continue") {
                expectContinue = true
            }
        case .upgrade:
            hasUpgrade = true
        case .other, .keepAlive, .proxyConnection, .te, .trailer, .proxyAuthorization, .proxyAuthenticate,
            .requestID, .traceparent, .meshHops, .idempotencyKey:
            break
        }
    }

    /// The framing of a request, or why it cannot be framed safely.
    func requestFraming(version: HTTPProtocolVersion) throws(HTTPParserError) -> HTTPFraming {
        if version == .http1_1 {
            if hostCount == 0 { throw .missingHost }
        }
        if hostCount > 1 { throw .duplicateHost }
        let body: HTTPBodyFraming
        if hasTransferEncoding {
            if contentLength != nil { throw .conflictingFraming }
            if version == .http1_0 { throw .transferEncodingInHTTP10 }
            if codingAfterChunked || chunkedCount > 1 { throw .chunkedNotFinal }
            if unknownCoding { throw .unknownTransferCoding }
            if !lastIsChunked { throw .chunkedNotFinal }
            body = .chunked
        } else if let length = contentLength {
            body = .contentLength(length)
        } else {
            body = .none
        }
        return HTTPFraming(
            body: body,
            keepAlive: keepAlive(version),
            expectsContinue: version == .http1_1 && expectContinue,
            upgrade: version == .http1_1 && hasUpgrade && connectionUpgrade
        )
    }

    /// The framing of a response to a request with `requestMethod` (RFC 9112 §6.3 in order).
    func responseFraming(
        version: HTTPProtocolVersion,
        status: Int,
        requestMethod: HTTPRequestMethod
    ) throws(HTTPParserError) -> HTTPFraming {
        if hasTransferEncoding && contentLength != nil { throw .conflictingFraming }
        if hasTransferEncoding && chunkedCount > 1 { throw .invalidTransferEncoding }
        let body: HTTPBodyFraming
        if requestMethod == .CONNECT && (200..<300).contains(status) || status == 101 {
            body = .tunnel
        } else if requestMethod == .HEAD || status < 200 || status == 204 || status == 304 {
            body = .none
        } else if hasTransferEncoding {
            // A final coding other than chunked, or HTTP/1.0 with TE, is delimited by close.
            body = (version == .http1_1 && lastIsChunked) ? .chunked : .untilClose
        } else if let length = contentLength {
            body = .contentLength(length)
        } else {
            body = .untilClose
        }
        let reusable: Bool
        switch body {
        case .untilClose, .tunnel: reusable = false
        case .none, .contentLength, .chunked: reusable = keepAlive(version)
        }
        return HTTPFraming(
            body: body,
            keepAlive: reusable,
            expectsContinue: false,
            upgrade: version == .http1_1 && hasUpgrade && connectionUpgrade
        )
    }

    private func keepAlive(_ version: HTTPProtocolVersion) -> Bool {
        if connectionClose { return false }
        return version == .http1_1 || connectionKeepAlive
    }

    private mutating func addCoding(_ coding: UnsafeRawBufferPointer) throws(HTTPParserError) {
        for b in coding where !HTTPGrammar.isTokenByte(b) {
            throw .invalidTransferEncoding  // parameters, quotes, spaces inside an element
        }
        codingCount += 1
        if chunkedCount > 0 { codingAfterChunked = true }
        if HTTPGrammar.equalsLowercase(coding, "chunked") {
            chunkedCount += 1
            lastIsChunked = true
            return
        }
        lastIsChunked = false
        if !(HTTPGrammar.equalsLowercase(coding, "gzip") || HTTPGrammar.equalsLowercase(coding, "x-gzip")
            || HTTPGrammar.equalsLowercase(coding, "deflate") || HTTPGrammar.equalsLowercase(coding, "compress")
            || HTTPGrammar.equalsLowercase(coding, "x-compress"))
        {
            unknownCoding = true
        }
    }

    private mutating func addConnectionOption(_ option: UnsafeRawBufferPointer, at range: Range<Int>) throws(HTTPParserError) {
        for b in option where !HTTPGrammar.isTokenByte(b) {
            throw .invalidConnectionHeader
        }
        if HTTPGrammar.equalsLowercase(option, "close") {
            connectionClose = true
        } else if HTTPGrammar.equalsLowercase(option, "keep-alive") {
            connectionKeepAlive = true
        } else if HTTPGrammar.equalsLowercase(option, "upgrade") {
            connectionUpgrade = true
        } else {
            switch HTTPKnownHeader.classify(option) {
            case .contentLength, .transferEncoding, .host:
                throw .invalidConnectionHeader
            default:
                connectionListedNames.append(range)
            }
        }
    }

    /// Splits a list value on commas, trimming OWS around each element.
    private static func forEachElement(
        _ head: UnsafeRawBufferPointer,
        _ range: Range<Int>,
        allowEmpty: Bool,
        _ body: (Range<Int>) throws(HTTPParserError) -> Void
    ) throws(HTTPParserError) {
        var start = range.lowerBound
        while start <= range.upperBound {
            var end = start
            while end < range.upperBound && head[end] != HTTPGrammar.comma { end += 1 }
            var lo = start
            var hi = end
            while lo < hi && HTTPGrammar.isWhitespace(head[lo]) { lo += 1 }
            while hi > lo && HTTPGrammar.isWhitespace(head[hi - 1]) { hi -= 1 }
            if lo == hi {
                if !allowEmpty { throw .invalidTransferEncoding }
            } else {
                try body(lo..<hi)
            }
            start = end + 1
        }
    }

    /// `1*DIGIT`, nothing else (no sign, no list, no whitespace), within `Int`.
    static func parseContentLength(_ bytes: UnsafeRawBufferPointer) throws(HTTPParserError) -> Int {
        guard !bytes.isEmpty else { throw .invalidContentLength }
        var value = 0
        for b in bytes {
            if b == HTTPGrammar.comma { throw .duplicateContentLength }
            guard HTTPGrammar.isDigit(b) else { throw .invalidContentLength }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.addingReportingOverflow(Int(b &- 0x30))
            guard !o1, !o2 else { throw .invalidContentLength }
            value = next
        }
        return value
    }
}
