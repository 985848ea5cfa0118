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
/// Lines go to the loop's `AccessLogBuffer`, written in batches (whole lines, so lines of
/// different loops never interleave), not a `write(2)` per request.
struct AccessLog: Sendable {
    let enabled: Bool
    let direction: String

    /// `now` is the event loop's clock (the exchange's duration); the line's timestamp is wall time.
    func record(_ exchange: ProxyExchange, status: Int, now: NIODeadline, into buffer: AccessLogBuffer) {
        guard enabled else { return }
        var timespec = timespec()
        clock_gettime(CLOCK_REALTIME, &timespec)
        let millis = Int64(timespec.tv_sec) * 1000 + Int64(timespec.tv_nsec) / 1_000_000
        buffer.append(line(for: exchange, status: status, wallMillis: millis, now: now))
    }

    /// The line for one exchange, newline included. Routed requests add their causes: `tries`
    /// (tries started), `retry_reasons` (each retried failure, as `sidecar_retries_total`'s
    /// reason), `retry_stopped` (why the last failure was not retried), `avoided_ejected`
    /// (ejected endpoints balancing skipped) and `mirrored`; each only when it says something.
    func line(for exchange: ProxyExchange, status: Int, wallMillis: Int64, now: NIODeadline) -> String {
        let micros = (now.uptimeNanoseconds &- exchange.start.uptimeNanoseconds) / 1000
        var line = "{\"ts_ms\":\(wallMillis),\"direction\":\"\(direction)\",\"method\":"
        line.reserveCapacity(320)
        Self.appendJSONString(exchange.methodName, to: &line)
        line += ",\"authority\":"
        Self.appendJSONString(exchange.authority, to: &line)
        line += ",\"path\":"
        Self.appendJSONString(exchange.path, to: &line)
        line += ",\"protocol\":\"\(exchange.wireProtocol.rawValue)\""
        if let grpc = exchange.grpcStatus { line += ",\"grpc_status\":\(grpc.rawValue)" }
        line += ",\"status\":\(status),\"duration_us\":\(micros),\"bytes_in\":\(exchange.bytesReceived)"
        line += ",\"bytes_out\":\(exchange.bytesSent),\"upstream\":"
        Self.appendJSONString(exchange.upstreamAddress?.description ?? "", to: &line)
        line += ",\"peer\":"
        Self.appendJSONString(exchange.peer, to: &line)
        line += ",\"request_id\":"
        Self.appendJSONString(exchange.requestID, to: &line)
        if let trace = exchange.trace {
            // Hex digits only (validated or made here): no escaping needed.
            line += ",\"trace_id\":\"\(trace.traceID)\",\"span_id\":\"\(trace.spanID)\""
        }
        if let cause = exchange.errorCause { line += ",\"mesh_error\":\"\(cause.rawValue)\"" }
        if exchange.attempts > 1 || !exchange.retryReasons.isEmpty || exchange.retryStopped != nil {
            line += ",\"tries\":\(exchange.attempts)"
        }
        if !exchange.retryReasons.isEmpty {
            line += ",\"retry_reasons\":["
            for (index, failure) in exchange.retryReasons.enumerated() {
                if index > 0 { line += "," }
                line += "\""
                line += failure.reason
                line += "\""
            }
            line += "]"
        }
        if let stopped = exchange.retryStopped { line += ",\"retry_stopped\":\"\(stopped)\"" }
        if exchange.avoidedEjected > 0 { line += ",\"avoided_ejected\":\(exchange.avoidedEjected)" }
        if exchange.mirrored { line += ",\"mirrored\":true" }
        line += "}\n"
        return line
    }

    static func appendJSONString(_ value: String, to line: inout String) {
        line += ConfigValue.quoted(value)
    }
}
