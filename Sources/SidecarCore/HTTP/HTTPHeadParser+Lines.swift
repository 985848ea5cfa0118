/// The grammar of single head lines: request-line, status-line and field-line (RFC 9112 §3, §4, §5).
extension HTTPHeadParser {
    mutating func parseStartLine(
        _ raw: UnsafeRawBufferPointer,
        _ content: Range<Int>,
        role: Role
    ) throws(HTTPParserError) {
        switch role {
        case .request:
            startLine = try Self.parseRequestLine(raw, content)
        case .response:
            startLine = try Self.parseStatusLine(raw, content)
        }
    }

    /// `method SP request-target SP HTTP-version`, single spaces, nothing else.
    static func parseRequestLine(
        _ raw: UnsafeRawBufferPointer,
        _ content: Range<Int>
    ) throws(HTTPParserError) -> StartLine {
        // The one permitted leading empty line was consumed before scanning began.
        if content.isEmpty { throw .tooManyLeadingEmptyLines }
        var i = content.lowerBound
        while i < content.upperBound && HTTPGrammar.isTokenByte(raw[i]) { i += 1 }
        guard i > content.lowerBound, i < content.upperBound, raw[i] == HTTPGrammar.sp else {
            try rejectBareCR(raw, content, line: 1)
            throw .invalidMethod
        }
        let methodRange = content.lowerBound..<i
        let targetStart = i + 1
        i = targetStart
        while i < content.upperBound && HTTPGrammar.isVisibleASCII(raw[i]) { i += 1 }
        guard i > targetStart else {
            try rejectBareCR(raw, content, line: 1)
            throw .invalidRequestTarget
        }
        guard i < content.upperBound else { throw .invalidVersion }  // HTTP/0.9 "GET /"
        guard raw[i] == HTTPGrammar.sp else {
            try rejectBareCR(raw, content, line: 1)
            throw .invalidRequestTarget
        }
        let targetRange = targetStart..<i
        let version = try parseVersion(UnsafeRawBufferPointer(rebasing: raw[(i + 1)..<content.upperBound]))
        let method = HTTPRequestMethod.classify(UnsafeRawBufferPointer(rebasing: raw[methodRange]))
        return .request(method, method: methodRange, target: targetRange, version)
    }

    /// `HTTP-version SP 3DIGIT [SP reason-phrase]` (the reason may be absent, with its space).
    static func parseStatusLine(_ raw: UnsafeRawBufferPointer, _ content: Range<Int>) throws(HTTPParserError) -> StartLine {
        try rejectBareCR(raw, content, line: 1)
        guard content.count >= 12, raw[content.lowerBound + 8] == HTTPGrammar.sp else {
            if content.count >= 8 {
                _ = try parseVersion(UnsafeRawBufferPointer(rebasing: raw[content.lowerBound..<(content.lowerBound + 8)]))
            }
            throw .invalidStatusLine
        }
        let version = try parseVersion(UnsafeRawBufferPointer(rebasing: raw[content.lowerBound..<(content.lowerBound + 8)]))
        var status = 0
        for i in (content.lowerBound + 9)..<(content.lowerBound + 12) {
            guard HTTPGrammar.isDigit(raw[i]) else { throw .invalidStatusCode }
            status = status * 10 + Int(raw[i] &- 0x30)
        }
        guard status >= 100 else { throw .invalidStatusCode }
        let afterCode = content.lowerBound + 12
        guard afterCode < content.upperBound else {
            return .response(version, status: status, reason: afterCode..<afterCode)
        }
        guard raw[afterCode] == HTTPGrammar.sp else { throw .invalidStatusCode }
        for i in (afterCode + 1)..<content.upperBound where !HTTPGrammar.isFieldValueByte(raw[i]) {
            throw .invalidStatusLine
        }
        return .response(version, status: status, reason: (afterCode + 1)..<content.upperBound)
    }

    /// Exactly `HTTP/1.1` or `HTTP/1.0`; other `HTTP/d.d` → 505; anything else → 400.
    static func parseVersion(_ bytes: UnsafeRawBufferPointer) throws(HTTPParserError) -> HTTPProtocolVersion {
        guard bytes.count == 8,
            bytes[0] == 0x48, bytes[1] == 0x54, bytes[2] == 0x54, bytes[3] == 0x50, bytes[4] == 0x2F,  // "HTTP/"
            HTTPGrammar.isDigit(bytes[5]), bytes[6] == 0x2E, HTTPGrammar.isDigit(bytes[7])
        else {
            throw .invalidVersion
        }
        switch (bytes[5], bytes[7]) {
        case (0x31, 0x31): return .http1_1
        case (0x31, 0x30): return .http1_0
        default: throw .unsupportedVersion
        }
    }

    /// `field-name ":" OWS field-value OWS`; no whitespace before the colon, no obs-fold.
    mutating func parseHeaderLine(
        _ raw: UnsafeRawBufferPointer,
        _ content: Range<Int>,
        lineEnd: Int
    ) throws(HTTPParserError) {
        let line = lineNumber
        let first = raw[content.lowerBound]
        if HTTPGrammar.isWhitespace(first) { throw .obsoleteLineFolding(line: line) }
        var i = content.lowerBound
        while i < content.upperBound && HTTPGrammar.isTokenByte(raw[i]) { i += 1 }
        guard i < content.upperBound, raw[i] == HTTPGrammar.colon, i > content.lowerBound else {
            try Self.rejectBareCR(raw, content, line: line)
            if i < content.upperBound && i > content.lowerBound && HTTPGrammar.isWhitespace(raw[i]) {
                throw .whitespaceBeforeColon(line: line)
            }
            throw .invalidHeaderName(line: line)
        }
        let nameEnd = i
        i += 1
        while i < content.upperBound && HTTPGrammar.isWhitespace(raw[i]) { i += 1 }
        let valueStart = i
        i = Self.skipPlainValueWords(raw, from: i, to: content.upperBound)
        while i < content.upperBound {
            let b = raw[i]
            guard HTTPGrammar.isFieldValueByte(b) else {
                if b == HTTPGrammar.cr { throw .bareCarriageReturn(line: line) }
                throw .invalidHeaderValue(line: line)
            }
            i += 1
        }
        var valueEnd = content.upperBound
        while valueEnd > valueStart && HTTPGrammar.isWhitespace(raw[valueEnd - 1]) { valueEnd -= 1 }
        guard fields.count < limits.maxHeaderCount else { throw .tooManyHeaders }
        let nameRange = content.lowerBound..<nameEnd
        let known = HTTPKnownHeader.classify(UnsafeRawBufferPointer(rebasing: raw[nameRange]))
        try rules.add(known, head: raw, value: valueStart..<valueEnd)
        if fields.isEmpty {
            fields.reserveCapacity(16)  // one allocation for a typical head instead of five
        }
        fields.append(
            HTTPHeaderField(
                lineStart: UInt32(content.lowerBound),
                nameLength: UInt32(nameRange.count),
                valueStart: UInt32(valueStart),
                valueEnd: UInt32(valueEnd),
                lineEnd: UInt32(lineEnd),
                known: known,
                isHopByHop: known.isHopByHop))
    }

    /// Skips 8 bytes at a time while none of them is a control byte or DEL (the common case
    /// for a field value: ids, tokens, dates); the byte loop after it checks the rest, and
    /// names the error when there is one.
    @inline(__always)
    private static func skipPlainValueWords(_ raw: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int {
        var i = start
        while end - i >= 8 {
            let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if HTTPGrammar.word(word, hasByteBelow: 0x20) || HTTPGrammar.word(word, hasByte: 0x7F) { break }
            i += 8
        }
        return i
    }

    /// Turns a CR found inside a line into the precise error.
    private static func rejectBareCR(_ raw: UnsafeRawBufferPointer, _ content: Range<Int>, line: Int) throws(HTTPParserError) {
        for i in content where raw[i] == HTTPGrammar.cr {
            throw .bareCarriageReturn(line: line)
        }
    }
}
