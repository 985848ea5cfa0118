#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// One JSON line per request on stdout (time, direction, method, authority, path, status,
/// duration, bytes, upstream, peer identity, request id, trace, `x-mesh-error` cause, and the
/// causes behind the answer: tries and retry reasons, ejections avoided, mirroring).
///
/// Lines are written as bytes straight into the loop's `AccessLogBuffer` (no `String` built per
/// request) and reach stdout in batches (whole lines, so lines of different loops never
/// interleave), not a `write(2)` per request.
struct AccessLog: Sendable {
    let enabled: Bool
    let direction: String

    /// `now` is the event loop's clock (the exchange's duration); the line's timestamp is wall time.
    func record(_ exchange: ProxyExchange, status: Int, now: NIODeadline, into buffer: AccessLogBuffer) {
        guard enabled else { return }
        var timespec = timespec()
        clock_gettime(CLOCK_REALTIME, &timespec)
        let millis = Int64(timespec.tv_sec) * 1000 + Int64(timespec.tv_nsec) / 1_000_000
        buffer.appendLine(bound: bound(of: exchange)) { write(exchange, status: status, wallMillis: millis, now: now, into: &$0) }
    }

    /// The line for one exchange, newline included (what `record` appends).
    func line(for exchange: ProxyExchange, status: Int, wallMillis: Int64, now: NIODeadline) -> String {
        var bytes: [UInt8] = []
        bytes.appendBytes(bound: bound(of: exchange)) { write(exchange, status: status, wallMillis: wallMillis, now: now, into: &$0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The most bytes `exchange`'s line can take: every key and punctuation (under 300 bytes),
    /// 9 numbers of at most 21 characters, each string escaped at most 6 bytes per byte.
    private func bound(of exchange: ProxyExchange) -> Int {
        var strings = direction.utf8.count + exchange.methodName.utf8.count + exchange.authority.utf8.count
            + exchange.path.utf8.count + exchange.wireProtocol.rawValue.utf8.count + exchange.peer.utf8.count
            + exchange.requestID.utf8.count + (exchange.upstreamAddress?.host.utf8.count ?? 0)
            + (exchange.trace == nil ? 0 : 48)
            + (exchange.errorCause?.rawValue.utf8.count ?? 0) + (exchange.retryStopped?.utf8.count ?? 0)
        for failure in exchange.retryReasons { strings += failure.reason.utf8.count + 3 }
        return 512 + 9 * JSONByteWriter.decimalBound + 6 * strings
    }

    /// Routed requests add their causes: `tries` (tries started), `retry_reasons` (each retried
    /// failure, as `sidecar_retries_total`'s reason), `retry_stopped` (why the last failure was
    /// not retried), `avoided_ejected` (ejected endpoints balancing skipped) and `mirrored`;
    /// each only when it says something.
    ///
    /// The line is written at a cursor into room reserved once for its longest possible form
    /// (`bound(of:)`), not appended piece by piece (each append checks uniqueness and capacity).
    private func write(_ exchange: ProxyExchange, status: Int, wallMillis: Int64, now: NIODeadline, into line: inout JSONByteWriter) {
        let micros = (now.uptimeNanoseconds &- exchange.start.uptimeNanoseconds) / 1000
        let trace = exchange.trace
        line.ascii("{\"ts_ms\":")
        line.decimal(wallMillis)
        line.ascii(",\"direction\":")
        line.plain(direction)
        line.ascii(",\"method\":")
        line.plain(exchange.methodName)
        line.ascii(",\"authority\":")
        line.string(exchange.authority)
        line.ascii(",\"path\":")
        line.string(exchange.path)
        line.ascii(",\"protocol\":")
        line.plain(exchange.wireProtocol.rawValue)
        if let grpc = exchange.grpcStatus {
            line.ascii(",\"grpc_status\":")
            line.decimal(Int64(grpc.rawValue))
        }
        line.ascii(",\"status\":")
        line.decimal(Int64(status))
        line.ascii(",\"duration_us\":")
        line.decimal(Int64(micros))
        line.ascii(",\"bytes_in\":")
        line.decimal(Int64(exchange.bytesReceived))
        line.ascii(",\"bytes_out\":")
        line.decimal(Int64(exchange.bytesSent))
        line.ascii(",\"upstream\":")
        if let upstream = exchange.upstreamAddress {
            line.string(upstream)
        } else {
            line.ascii("\"\"")
        }
        line.ascii(",\"peer\":")
        line.string(exchange.peer)
        line.ascii(",\"request_id\":")
        line.string(exchange.requestID)
        if let trace {
            line.ascii(",\"trace_id\":\"")
            line.hex(trace.traceHigh)
            line.hex(trace.traceLow)
            line.ascii("\",\"span_id\":\"")
            line.hex(trace.span)
            line.byte(UInt8(ascii: "\""))
        }
        if let cause = exchange.errorCause {
            line.ascii(",\"mesh_error\":")
            line.string(cause.rawValue)
        }
        if exchange.attempts > 1 || !exchange.retryReasons.isEmpty || exchange.retryStopped != nil {
            line.ascii(",\"tries\":")
            line.decimal(Int64(exchange.attempts))
        }
        if !exchange.retryReasons.isEmpty {
            line.ascii(",\"retry_reasons\":[")
            for (index, failure) in exchange.retryReasons.enumerated() {
                if index > 0 { line.byte(UInt8(ascii: ",")) }
                line.string(failure.reason)
            }
            line.byte(UInt8(ascii: "]"))
        }
        if let stopped = exchange.retryStopped {
            line.ascii(",\"retry_stopped\":")
            line.string(stopped)
        }
        if exchange.avoidedEjected > 0 {
            line.ascii(",\"avoided_ejected\":")
            line.decimal(Int64(exchange.avoidedEjected))
        }
        if exchange.mirrored { line.ascii(",\"mirrored\":true") }
        line.ascii("}\n")
    }

    /// `value` as a JSON string literal appended to `line` (the admin JSON documents).
    static func appendJSONString(_ value: String, to line: inout String) {
        line += ConfigValue.quoted(value)
    }
}

extension [UInt8] {
    /// Appends what `write` puts at a `JSONByteWriter`, at most `bound` bytes (one capacity
    /// check for all of them, instead of one per piece).
    mutating func appendBytes(bound: Int, _ write: (inout JSONByteWriter) -> Void) {
        let start = count
        append(contentsOf: repeatElement(0, count: bound))
        let end = withUnsafeMutableBufferPointer { buffer in
            var writer = JSONByteWriter(buffer.baseAddress!, at: start, limit: start + bound)
            write(&writer)
            return writer.offset
        }
        removeLast(count - end)
    }

    /// `value` as a JSON string literal that is also a YAML double-quoted scalar (the text reads
    /// back unchanged through both parsers; `ConfigValue.needsUnicodeEscape`).
    mutating func appendJSONString(_ value: String) {
        appendBytes(bound: JSONByteWriter.bound(of: value)) { $0.string(value) }
    }
}

/// Writes JSON pieces at a cursor into memory reserved for them (see `[UInt8].appendBytes`);
/// the caller reserves the most they can take: `bound(of:)` per string, `decimalBound` per
/// number, the literals' lengths. The one JSON string escaper of the project.
struct JSONByteWriter {
    private let base: UnsafeMutablePointer<UInt8>
    private(set) var offset: Int
    private let limit: Int

    /// The most bytes a number takes (sign and 19 digits).
    static let decimalBound = 21

    /// The most bytes `string(value)` takes: quotes, and 6 per byte (`\u00XX`).
    static func bound(of value: String) -> Int { 6 * value.utf8.count + 2 }

    init(_ base: UnsafeMutablePointer<UInt8>, at offset: Int, limit: Int) {
        self.base = base
        self.offset = offset
        self.limit = limit
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        precondition(offset < limit, "JSONByteWriter: the reserved bound was too small")
        base[offset] = value
        offset += 1
    }

    mutating func bytes(_ source: UnsafeBufferPointer<UInt8>) {
        precondition(offset + source.count <= limit, "JSONByteWriter: the reserved bound was too small")
        (base + offset).update(from: source.baseAddress!, count: source.count)
        offset += source.count
    }

    /// A literal known to be ASCII (field names and punctuation).
    mutating func ascii(_ text: StaticString) {
        bytes(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Digits written in place from the last, two at a time from a table: divisions by the
    /// constant 100 only (a division by a variable scale costs tens of cycles each), the length
    /// found first by comparing with powers of ten.
    mutating func decimal(_ value: Int64) {
        if value < 0 { byte(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits = 1
        var power: UInt64 = 10
        while digits < 20 && magnitude >= power {
            digits += 1
            power = power &* 10
        }
        precondition(offset + digits <= limit, "JSONByteWriter: the reserved bound was too small")
        let pairs = Self.digitPairs.utf8Start
        var at = offset + digits
        while magnitude >= 100 {
            let pair = Int(truncatingIfNeeded: magnitude % 100) &* 2
            magnitude /= 100
            at -= 2
            base[at] = pairs[pair]
            base[at + 1] = pairs[pair + 1]
        }
        if magnitude >= 10 {
            let pair = Int(truncatingIfNeeded: magnitude) &* 2
            base[at - 2] = pairs[pair]
            base[at - 1] = pairs[pair + 1]
        } else {
            base[at - 1] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude)
        }
        offset += digits
    }

    private static let digitPairs: StaticString =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    /// `value`'s 16 lowercase hex digits (a trace or span id's), unquoted.
    mutating func hex(_ value: UInt64) {
        precondition(offset + 16 <= limit, "JSONByteWriter: the reserved bound was too small")
        HTTPGrammar.writeHex(value, to: base + offset)
        offset += 16
    }

    /// `host:port`, `[v6]:port` for IPv6 literals, as a JSON string (`HostPort.description`).
    mutating func string(_ address: HostPort) {
        byte(UInt8(ascii: "\""))
        let bracketed = address.isIPv6Literal
        if bracketed { byte(UInt8(ascii: "[")) }
        stringContent(address.host)
        if bracketed { byte(UInt8(ascii: "]")) }
        byte(UInt8(ascii: ":"))
        decimal(Int64(address.port))
        byte(UInt8(ascii: "\""))
    }

    mutating func string(_ value: String) {
        byte(UInt8(ascii: "\""))
        stringContent(value)
        byte(UInt8(ascii: "\""))
    }

    /// A string the sidecar knows needs no escaping (its own hex ids, a method token, a
    /// direction or protocol name), quoted and copied without looking at its bytes. Checked in
    /// debug builds.
    mutating func plain(_ value: String) {
        assert(value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
        byte(UInt8(ascii: "\""))
        precondition(offset + value.utf8.count <= limit, "JSONByteWriter: the reserved bound was too small")
        UnsafeMutableBufferPointer(start: base, count: limit).copyUTF8(of: value, at: &offset)
        byte(UInt8(ascii: "\""))
    }

    private mutating func stringContent(_ value: String) {
        let copied = value.utf8.withContiguousStorageIfAvailable { utf8 in
            // The common case: printable ASCII without quotes or backslashes, copied as it is.
            guard Self.isPlain(utf8) else { return false }
            bytes(utf8)
            return true
        }
        if copied != true {
            for scalar in value.unicodeScalars { escaped(scalar) }
        }
    }

    /// Printable ASCII without `"` or `\\`: 8 bytes at a time (a control byte, DEL or non-ASCII,
    /// a quote or a backslash in a word sends the rest to the byte loop).
    static func isPlain(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        let raw = UnsafeRawBufferPointer(utf8)
        while utf8.count - index >= 8 {
            let word = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if HTTPGrammar.word(word, hasByteBelow: 0x20) || word & 0x8080_8080_8080_8080 != 0
                || HTTPGrammar.word(word, hasByte: 0x7F) || HTTPGrammar.word(word, hasByte: UInt8(ascii: "\""))
                || HTTPGrammar.word(word, hasByte: UInt8(ascii: "\\"))
            {
                break
            }
            index += 8
        }
        while index < utf8.count {
            let byte = utf8[index]
            guard byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") else { return false }
            index += 1
        }
        return true
    }

    private mutating func escaped(_ scalar: Unicode.Scalar) {
        switch scalar {
        case "\"": ascii("\\\"")
        case "\\": ascii("\\\\")
        case "\n": ascii("\\n")
        case "\r": ascii("\\r")
        case "\t": ascii("\\t")
        case _ where ConfigValue.needsUnicodeEscape(scalar):
            ascii("\\u")
            for shift in stride(from: 12, through: 0, by: -4) {
                byte(HTTPGrammar.hexDigit(UInt8((scalar.value >> UInt32(shift)) & 0xF), uppercase: true))
            }
        default:
            for unit in UTF8.encode(scalar)! { byte(unit) }
        }
    }
}
