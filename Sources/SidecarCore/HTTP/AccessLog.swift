#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// One JSON line per request on stdout (time, direction, method, authority, path, status,
/// duration, bytes, upstream, peer identity, request id, `x-mesh-error` cause). Written with
/// one `write(2)` per line so lines never interleave and nothing waits in a stdio buffer.
struct AccessLog: Sendable {
    let enabled: Bool
    let direction: String

    func record(_ exchange: ProxyExchange, status: Int) {
        guard enabled else { return }
        let now = NIODeadline.now()
        let micros = (now.uptimeNanoseconds &- exchange.start.uptimeNanoseconds) / 1000
        var timespec = timespec()
        clock_gettime(CLOCK_REALTIME, &timespec)
        let millis = Int64(timespec.tv_sec) * 1000 + Int64(timespec.tv_nsec) / 1_000_000
        var line = "{\"ts_ms\":\(millis),\"direction\":\"\(direction)\",\"method\":"
        Self.appendJSONString(exchange.methodName, to: &line)
        line += ",\"authority\":"
        Self.appendJSONString(exchange.authority, to: &line)
        line += ",\"path\":"
        Self.appendJSONString(exchange.path, to: &line)
        line += ",\"status\":\(status),\"duration_us\":\(micros),\"bytes_in\":\(exchange.bytesReceived)"
        line += ",\"bytes_out\":\(exchange.bytesSent),\"upstream\":"
        Self.appendJSONString(exchange.upstreamAddress?.description ?? "", to: &line)
        line += ",\"peer\":"
        Self.appendJSONString(exchange.peer, to: &line)
        line += ",\"request_id\":"
        Self.appendJSONString(exchange.requestID, to: &line)
        if let cause = exchange.errorCause { line += ",\"mesh_error\":\"\(cause.rawValue)\"" }
        line += "}\n"
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { break }
            offset += written
        }
    }

    static func appendJSONString(_ value: String, to line: inout String) {
        line += ConfigValue.quoted(value)
    }
}
