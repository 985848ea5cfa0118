import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Incrementally parses one HTTP/1.1 request or response head out of a connection's receive
/// buffer, strictly per RFC 9112, without copying it and without rescanning bytes it has seen.
///
/// Feed it the same cumulation buffer after every read: it remembers how far it has looked,
/// returns `nil` until the head's final empty line has arrived, then consumes exactly the head
/// (leaving the body and any pipelined bytes in the buffer) and returns it as a slice of the
/// buffer's storage. Between calls the caller may append bytes and discard bytes already read,
/// but must not move the reader index over a head in progress. The returned head shares the
/// buffer's storage: drop it (after forwarding or rewriting) before the next read is appended,
/// or that append copies the buffer.
///
/// Decisions worth knowing (all stricter than "be liberal in what you accept"):
/// - line endings are CRLF only; bare LF and bare CR anywhere in a head are refused;
/// - one empty line before a request line is ignored (RFC 9112 §2.2), a second is refused;
/// - the request-target must be visible ASCII (no spaces, controls or raw UTF-8);
/// - `HTTP/x.y` other than 1.0/1.1 is 505, anything else where a version belongs is 400;
/// - a response status line may omit the space and reason after the code (common in practice);
/// - field framing rules are in `HTTPFramingRules`.
/// After a thrown error the parser is reset, but the connection's bytes cannot be framed any
/// more: answer with `error.status` and close.
///
/// A proxy handler drives it together with `HTTPBodyFramer` and `HTTPHeadWriter`:
///
///     cumulation.writeImmutableBuffer(read)
///     while true {
///         if framer == nil {
///             guard let head = try parser.parseRequest(&cumulation) else { break }
///             writer.write(head, adding: [requestID], into: &out)   // or forward head.headers.bytes
///             framer = HTTPBodyFramer(framing: head.framing.body)
///         }
///         let (body, done) = try framer!.readBody(from: &cumulation)
///         if let body { out.writeImmutableBuffer(body) }                // raw bytes, chunked included
///         if done { framer = nil } else { break }
///     }
public struct HTTPHeadParser: Sendable {
    /// Bounds on what one head may cost.
    public struct Limits: Sendable, Hashable {
        /// Bytes from the first byte of the start line through the final CRLF.
        public var maxHeadSize: Int
        /// Header lines in one head.
        public var maxHeaderCount: Int

        public init(maxHeadSize: Int = 64 * 1024, maxHeaderCount: Int = 100) {
            self.maxHeadSize = min(maxHeadSize, Int(UInt32.max))
            self.maxHeaderCount = maxHeaderCount
        }
    }

    enum StartLine {
        case request(HTTPRequestMethod, method: Range<Int>, target: Range<Int>, HTTPProtocolVersion)
        case response(HTTPProtocolVersion, status: Int, reason: Range<Int>)
    }

    enum Role {
        case request
        case response(to: HTTPRequestMethod)
    }

    public let limits: Limits

    // Progress on the head in progress; offsets are relative to the buffer's reader index.
    private var scanned = 0
    private var lineStart = 0
    var lineNumber = 1
    private var skippedEmptyLine = false
    var startLine: StartLine?
    var fields: [HTTPHeaderField] = []
    var rules = HTTPFramingRules()
    private var framing: HTTPFraming?

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Parses a request head from `buffer`, consuming it when complete; `nil` means "need more bytes".
    public mutating func parseRequest(_ buffer: inout ByteBuffer) throws(HTTPParserError) -> HTTPRawRequestHead? {
        guard let head = try parse(&buffer, role: .request) else { return nil }
        guard case .request(let method, let methodRange, let target, let version) = head.startLine else {
            preconditionFailure("request role produced a response start line")
        }
        return HTTPRawRequestHead(
            method: method, version: version, headers: head.headers, framing: head.framing,
            methodRange: methodRange, targetRange: target)
    }

    /// Parses the response head answering a `requestMethod` request; `nil` means "need more bytes".
    /// After a 1xx informational head, call again for the final response.
    public mutating func parseResponse(
        _ buffer: inout ByteBuffer,
        requestMethod: HTTPRequestMethod
    ) throws(HTTPParserError) -> HTTPRawResponseHead? {
        guard let head = try parse(&buffer, role: .response(to: requestMethod)) else { return nil }
        guard case .response(let version, let status, let reason) = head.startLine else {
            preconditionFailure("response role produced a request start line")
        }
        return HTTPRawResponseHead(
            version: version, status: status, headers: head.headers, framing: head.framing,
            reasonRange: reason)
    }

    private mutating func parse(
        _ buffer: inout ByteBuffer,
        role: Role
    ) throws(HTTPParserError) -> (startLine: StartLine, headers: HTTPRawHeaders, framing: HTTPFraming)? {
        if buffer.readableBytes < scanned {
            // The caller moved the reader index under us: start this head again from scratch.
            self = HTTPHeadParser(limits: limits)
        }
        if case .request = role, !skippedEmptyLine, scanned == 0 {
            // RFC 9112 §2.2: ignore at least one empty line before a request line; we ignore one.
            switch (buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                    buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self)) {
            case (HTTPGrammar.cr, HTTPGrammar.lf):
                buffer.moveReaderIndex(forwardBy: 2)
                skippedEmptyLine = true
            case (HTTPGrammar.cr, nil):
                return nil
            default:
                break
            }
        }
        let outcome: Result<Int?, HTTPParserError> = buffer.withUnsafeReadableBytes { raw in
            do throws(HTTPParserError) {
                return .success(try self.scan(raw, role: role))
            } catch {
                return .failure(error)
            }
        }
        let headLength: Int
        switch outcome {
        case .success(nil):
            return nil
        case .success(let length?):
            headLength = length
        case .failure(let error):
            self = HTTPHeadParser(limits: limits)
            throw error
        }
        let bytes = buffer.readSlice(length: headLength)!
        let result = (startLine!, HTTPRawHeaders(bytes: bytes, fields: fields), framing!)
        self = HTTPHeadParser(limits: limits)
        return result
    }

    /// Looks for complete lines in `raw` from where the last call stopped; returns the head's
    /// length once its empty line is found.
    private mutating func scan(_ raw: UnsafeRawBufferPointer, role: Role) throws(HTTPParserError) -> Int? {
        var i = scanned
        while true {
            guard let lf = Self.firstLineFeed(raw, from: i) else {
                scanned = raw.count
                // A head that has not ended within maxHeadSize bytes cannot end within it: refuse
                // at the limit itself, since the reader stops reading at that many buffered bytes.
                if raw.count >= limits.maxHeadSize { throw .headTooLarge }
                return nil
            }
            let lineEnd = lf + 1
            if lineEnd > limits.maxHeadSize { throw .headTooLarge }
            guard lf > lineStart, raw[lf - 1] == HTTPGrammar.cr else {
                throw .bareLineFeed(line: lineNumber)
            }
            let content = lineStart..<(lf - 1)
            if startLine == nil {
                try parseStartLine(raw, content, role: role)
            } else if content.isEmpty {
                try finish(raw, role: role)
                return lineEnd
            } else {
                try parseHeaderLine(raw, content, lineEnd: lineEnd)
            }
            lineStart = lineEnd
            lineNumber += 1
            i = lineEnd
        }
    }

    /// libc's `memchr` (vectorised): every byte of a head is looked at here and again by the
    /// line's own checks, and this is the half that needs no per-byte decision.
    @inline(__always)
    private static func firstLineFeed(_ raw: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < raw.count, let base = raw.baseAddress,
            let found = memchr(base + start, Int32(HTTPGrammar.lf), raw.count - start)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    private mutating func finish(_ raw: UnsafeRawBufferPointer, role: Role) throws(HTTPParserError) {
        switch (startLine!, role) {
        case (.request(_, _, _, let version), _):
            framing = try rules.requestFraming(version: version)
        case (.response(let version, let status, _), .response(let method)):
            framing = try rules.responseFraming(version: version, status: status, requestMethod: method)
        case (.response, .request):
            preconditionFailure("response start line parsed in request role")
        }
        let listed = rules.connectionListedNames
        guard !listed.isEmpty else { return }
        for index in fields.indices where !fields[index].isHopByHop {
            let name = UnsafeRawBufferPointer(rebasing: raw[fields[index].nameRange])
            for range in listed
            where HTTPGrammar.equalsIgnoringCase(name, UnsafeRawBufferPointer(rebasing: raw[range])) {
                fields[index].isHopByHop = true
            }
        }
    }
}
