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
        buffer.appendLine { write(exchange, status: status, wallMillis: millis, now: now, into: &$0) }
    }

    /// The line for one exchange, newline included (what `record` appends).
    func line(for exchange: ProxyExchange, status: Int, wallMillis: Int64, now: NIODeadline) -> String {
        var bytes: [UInt8] = []
        write(exchange, status: status, wallMillis: wallMillis, now: now, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Routed requests add their causes: `tries` (tries started), `retry_reasons` (each retried
    /// failure, as `sidecar_retries_total`'s reason), `retry_stopped` (why the last failure was
    /// not retried), `avoided_ejected` (ejected endpoints balancing skipped) and `mirrored`;
    /// each only when it says something.
    private func write(_ exchange: ProxyExchange, status: Int, wallMillis: Int64, now: NIODeadline, into out: inout [UInt8]) {
        let micros = (now.uptimeNanoseconds &- exchange.start.uptimeNanoseconds) / 1000
        out.appendASCII("{\"ts_ms\":")
        out.appendDecimal(wallMillis)
        out.appendASCII(",\"direction\":")
        out.appendJSONString(direction)
        out.appendASCII(",\"method\":")
        out.appendJSONString(exchange.methodName)
        out.appendASCII(",\"authority\":")
        out.appendJSONString(exchange.authority)
        out.appendASCII(",\"path\":")
        out.appendJSONString(exchange.path)
        out.appendASCII(",\"protocol\":")
        out.appendJSONString(exchange.wireProtocol.rawValue)
        if let grpc = exchange.grpcStatus {
            out.appendASCII(",\"grpc_status\":")
            out.appendDecimal(Int64(grpc.rawValue))
        }
        out.appendASCII(",\"status\":")
        out.appendDecimal(Int64(status))
        out.appendASCII(",\"duration_us\":")
        out.appendDecimal(Int64(micros))
        out.appendASCII(",\"bytes_in\":")
        out.appendDecimal(Int64(exchange.bytesReceived))
        out.appendASCII(",\"bytes_out\":")
        out.appendDecimal(Int64(exchange.bytesSent))
        out.appendASCII(",\"upstream\":")
        if let upstream = exchange.upstreamAddress {
            out.appendJSONString(upstream)
        } else {
            out.appendASCII("\"\"")
        }
        out.appendASCII(",\"peer\":")
        out.appendJSONString(exchange.peer)
        out.appendASCII(",\"request_id\":")
        out.appendJSONString(exchange.requestID)
        if let trace = exchange.trace {
            out.appendASCII(",\"trace_id\":")
            out.appendJSONString(trace.traceID)
            out.appendASCII(",\"span_id\":")
            out.appendJSONString(trace.spanID)
        }
        if let cause = exchange.errorCause {
            out.appendASCII(",\"mesh_error\":")
            out.appendJSONString(cause.rawValue)
        }
        if exchange.attempts > 1 || !exchange.retryReasons.isEmpty || exchange.retryStopped != nil {
            out.appendASCII(",\"tries\":")
            out.appendDecimal(Int64(exchange.attempts))
        }
        if !exchange.retryReasons.isEmpty {
            out.appendASCII(",\"retry_reasons\":[")
            for (index, failure) in exchange.retryReasons.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out.appendJSONString(failure.reason)
            }
            out.append(UInt8(ascii: "]"))
        }
        if let stopped = exchange.retryStopped {
            out.appendASCII(",\"retry_stopped\":")
            out.appendJSONString(stopped)
        }
        if exchange.avoidedEjected > 0 {
            out.appendASCII(",\"avoided_ejected\":")
            out.appendDecimal(Int64(exchange.avoidedEjected))
        }
        if exchange.mirrored { out.appendASCII(",\"mirrored\":true") }
        out.appendASCII("}\n")
    }

    /// `value` as a JSON string literal appended to `line` (the admin JSON documents).
    static func appendJSONString(_ value: String, to line: inout String) {
        line += ConfigValue.quoted(value)
    }
}

extension [UInt8] {
    /// A literal known to be ASCII (field names and punctuation).
    mutating func appendASCII(_ text: StaticString) {
        text.withUTF8Buffer { append(contentsOf: $0) }
    }

    /// `value` in decimal, without an intermediate `String`.
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDecimal(magnitude: value.magnitude)
        } else {
            appendDecimal(magnitude: UInt64(value))
        }
    }

    private mutating func appendDecimal(magnitude: UInt64) {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes ≥ 20 digits
        Swift.withUnsafeMutableBytes(of: &digits) { scratch in
            var value = magnitude
            var index = scratch.count
            repeat {
                index -= 1
                scratch[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
                value /= 10
            } while value > 0
            append(contentsOf: scratch[index...])
        }
    }

    /// `host:port`, `[v6]:port` for IPv6 literals, as a JSON string (`HostPort.description`).
    mutating func appendJSONString(_ address: HostPort) {
        append(UInt8(ascii: "\""))
        let bracketed = address.isIPv6Literal
        if bracketed { append(UInt8(ascii: "[")) }
        appendJSONStringContent(address.host)
        if bracketed { append(UInt8(ascii: "]")) }
        append(UInt8(ascii: ":"))
        appendDecimal(Int64(address.port))
        append(UInt8(ascii: "\""))
    }

    /// `value` as a JSON string literal that is also a YAML double-quoted scalar (the text reads
    /// back unchanged through both parsers; `ConfigValue.needsUnicodeEscape`).
    mutating func appendJSONString(_ value: String) {
        append(UInt8(ascii: "\""))
        appendJSONStringContent(value)
        append(UInt8(ascii: "\""))
    }

    private mutating func appendJSONStringContent(_ value: String) {
        let copied = value.utf8.withContiguousStorageIfAvailable { utf8 in
            // The common case: printable ASCII without quotes or backslashes, copied as it is.
            guard utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
            else { return false }
            append(contentsOf: utf8)
            return true
        }
        if copied != true {
            for scalar in value.unicodeScalars { appendEscaped(scalar) }
        }
    }

    private mutating func appendEscaped(_ scalar: Unicode.Scalar) {
        switch scalar {
        case "\"": appendASCII("\\\"")
        case "\\": appendASCII("\\\\")
        case "\n": appendASCII("\\n")
        case "\r": appendASCII("\\r")
        case "\t": appendASCII("\\t")
        case _ where ConfigValue.needsUnicodeEscape(scalar):
            appendASCII("\\u")
            for shift in stride(from: 12, through: 0, by: -4) {
                append(HTTPGrammar.hexDigit(UInt8((scalar.value >> UInt32(shift)) & 0xF), uppercase: true))
            }
        default: append(contentsOf: UTF8.encode(scalar)!)
        }
    }
}
