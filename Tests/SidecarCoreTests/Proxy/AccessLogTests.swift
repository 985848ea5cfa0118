import Foundation
import NIOCore
import Testing

@testable import SidecarCore

/// The access log line: valid JSON with the base fields, plus the causes (tries, retry
/// reasons, why retrying stopped, avoided ejections, mirroring) only when there are some.
@Suite struct AccessLogTests {
    let log = AccessLog(enabled: true, direction: "outbound")

    func exchange(method: String = "GET", path: String = "/pay") -> ProxyExchange {
        ProxyExchange(
            method: method == "GET" ? .GET : .POST, methodName: method, authority: "payments", path: path,
            requestID: "r-1", peer: "payments", closeAfterResponse: false, framing: .none,
            start: .uptimeNanoseconds(1_000_000_000))
    }

    func json(_ line: String) throws -> [String: Any] {
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func plainRequestHasTheBaseFieldsAndNoCauses() throws {
        let exchange = exchange(path: "/a \"quoted\" path")
        exchange.poolKey = .init(address: HostPort(host: "127.0.0.1", port: 16006), service: "payments")
        let line = log.line(for: exchange, status: 200, wallMillis: 1_700_000_000_000, now: exchange.start + .milliseconds(3))
        let fields = try json(line)
        #expect(fields["ts_ms"] as? Int64 == 1_700_000_000_000)
        #expect(fields["path"] as? String == "/a \"quoted\" path")
        #expect(fields["status"] as? Int == 200)
        #expect(fields["duration_us"] as? Int == 3000)
        #expect(fields["upstream"] as? String == "127.0.0.1:16006")
        #expect(fields["trace_id"] == nil, "no trace context was set")
        for absent in ["mesh_error", "tries", "retry_reasons", "retry_stopped", "avoided_ejected", "mirrored"] {
            #expect(fields[absent] == nil, "\(absent)")
        }
    }

    @Test func theTraceAndThisHopsSpanAreLogged() throws {
        let exchange = exchange()
        exchange.trace = TraceContext(traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "b7ad6b7169203331", flags: "01")
        let fields = try json(log.line(for: exchange, status: 200, wallMillis: 1, now: exchange.start))
        #expect(fields["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(fields["span_id"] as? String == "b7ad6b7169203331")
    }

    @Test func retriesRejectionsEjectionsAndMirroringAreLoggedWithTheirCauses() throws {
        let exchange = exchange(method: "POST")
        exchange.attempts = 3
        exchange.retryReasons = [.status(503), .perTryTimeout]
        exchange.retryStopped = "attempts-exhausted"
        exchange.avoidedEjected = 1
        exchange.mirrored = true
        exchange.errorCause = .timeout
        let fields = try json(log.line(for: exchange, status: 504, wallMillis: 1, now: exchange.start))
        #expect(fields["tries"] as? Int == 3)
        #expect(fields["retry_reasons"] as? [String] == ["503", "per-try-timeout"])
        #expect(fields["retry_stopped"] as? String == "attempts-exhausted")
        #expect(fields["avoided_ejected"] as? Int == 1)
        #expect(fields["mirrored"] as? Bool == true)
        #expect(fields["mesh_error"] as? String == "timeout")
    }

    @Test func aRejectionCarriesItsCause() throws {
        for cause in [ProxyError.Cause.circuitOpen, .rateLimited, .forbidden, .noRoute] {
            let exchange = exchange()
            exchange.errorCause = cause
            let fields = try json(log.line(for: exchange, status: cause.status, wallMillis: 1, now: exchange.start))
            #expect(fields["mesh_error"] as? String == cause.rawValue)
            #expect(fields["tries"] == nil)
        }
    }

    @Test func fieldsAreEscapedAsTheOneJSONQuotingDoesAndNumbersAreExact() throws {
        let hostile = "a\"b\\c\nd\u{1}é NEL\u{85} LS\u{2028} BOM\u{FEFF} \u{FFFE} 🚀"
        let exchange = exchange(path: hostile)
        exchange.poolKey = .init(address: HostPort(host: "::1", port: 65535), service: "payments")
        exchange.bytesReceived = Int(Int32.max) + 7
        let line = log.line(for: exchange, status: 200, wallMillis: -1, now: exchange.start + .microseconds(987_654))
        #expect(line.contains(",\"path\":\(ConfigValue.quoted(hostile)),"))
        #expect(ConfigValue.quoted(hostile) == "\"a\\\"b\\\\c\\nd\\u0001é NEL\\u0085 LS\\u2028 BOM\\uFEFF \\uFFFE 🚀\"")
        let fields = try json(line)
        #expect(fields["path"] as? String == hostile)
        #expect(fields["upstream"] as? String == "[::1]:65535")
        #expect(fields["ts_ms"] as? Int == -1)
        #expect(fields["duration_us"] as? Int == 987_654)
        #expect(fields["bytes_in"] as? Int == Int(Int32.max) + 7)
        #expect(fields["bytes_out"] as? Int == 0)
    }

    /// Strings are checked 8 bytes at a time: a character that needs escaping is found at any
    /// offset, and what is plain is copied as it is.
    @Test func everyOffsetOfAWordIsChecked() {
        let plain = "GET /pay/orders?q=12345&page=2 payments"
        #expect(plain.utf8.withContiguousStorageIfAvailable { JSONByteWriter.isPlain($0) } == true)
        for offset in 0...20 {
            for bad in ["\"", "\\", "\u{1}", "\u{7F}", "é", "\n"] {
                let text = String(plain.prefix(offset)) + bad + String(plain.dropFirst(offset))
                #expect(text.utf8.withContiguousStorageIfAvailable { JSONByteWriter.isPlain($0) } == false, "\(bad) at \(offset)")
            }
        }
    }

    @Test(arguments: [0, 7, 9, 10, 11, 99, 100, 101, 999, 1000, 12_345, 1_764_936_000_123, 1_000_000_007, Int64.max, Int64.min, -1, -10, -99])
    func numbersAreWrittenExactly(_ value: Int64) {
        var bytes = [UInt8](repeating: 0, count: JSONByteWriter.decimalBound)
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int in
            var writer = JSONByteWriter(buffer.baseAddress!, at: 0, limit: buffer.count)
            writer.decimal(value)
            return writer.offset
        }
        #expect(String(decoding: bytes[..<written], as: UTF8.self) == String(value))
    }
}
