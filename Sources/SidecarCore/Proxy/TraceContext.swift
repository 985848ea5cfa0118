/// W3C trace context for one hop (`traceparent: 00-<trace-id>-<span-id>-<flags>`): the
/// caller's trace continues with a new span id for what this sidecar sends on, so every hop
/// is its own span of the same trace; a request without a valid `traceparent` starts a trace.
/// The access log carries both ids (`trace_id`, `span_id`); an exported span also names the
/// caller's span as its parent.
struct TraceContext: Equatable {
    /// 32 lowercase hex digits, not all zero.
    let traceID: String
    /// 16 lowercase hex digits, not all zero: the span this hop sends on.
    let spanID: String
    /// 2 hex digits (bit 0: sampled).
    let flags: String
    /// The caller's span (from its `traceparent`); nil when this hop started the trace.
    var parentSpanID: String? = nil

    /// Bit 0 of the flags: the caller wants this trace recorded.
    var sampled: Bool { (UInt8(flags, radix: 16) ?? 0) & 1 == 1 }

    /// Built in place (an interpolation appended five times, growing the string, per request).
    var traceparent: String {
        String(unsafeUninitializedCapacity: 5 + traceID.utf8.count + spanID.utf8.count + flags.utf8.count) { out in
            var at = 0
            out.copyUTF8(of: "00-", at: &at)
            out.copyUTF8(of: traceID, at: &at)
            out.copyUTF8(of: "-", at: &at)
            out.copyUTF8(of: spanID, at: &at)
            out.copyUTF8(of: "-", at: &at)
            out.copyUTF8(of: flags, at: &at)
            return at
        }
    }

    /// The context to send on for a request that arrived with `received` as its `traceparent`.
    static func nextHop(after received: String?, using random: inout some RandomNumberGenerator) -> TraceContext {
        nextHop(after: received.flatMap(parse), using: &random)
    }

    /// The same, from the received field's bytes (no `String` made of them).
    static func nextHop(afterBytes received: UnsafeRawBufferPointer?, using random: inout some RandomNumberGenerator) -> TraceContext {
        nextHop(after: received.flatMap { parse(bytes: $0) }, using: &random)
    }

    private static func nextHop(
        after received: (traceID: String, flags: String, spanID: String)?, using random: inout some RandomNumberGenerator
    ) -> TraceContext {
        let span = newID(8, using: &random)
        if let (trace, flags, parent) = received {
            return TraceContext(traceID: trace, spanID: span, flags: flags, parentSpanID: parent)
        }
        return TraceContext(traceID: newID(16, using: &random), spanID: span, flags: "01")
    }

    /// The trace id and flags of a valid `traceparent` (W3C Trace Context §3.2): version 00 is
    /// exactly 55 characters; a later version may append `-…`, and its first four fields are
    /// read as version 00's. Version `ff`, uppercase or non-hex digits, and all-zero ids are invalid.
    static func parse(_ value: String) -> (traceID: String, flags: String, spanID: String)? {
        value.utf8.withContiguousStorageIfAvailable { parse(bytes: $0) } ?? parse(bytes: Array(value.utf8))
    }

    private static func parse<Bytes: RandomAccessCollection<UInt8>>(bytes: Bytes) -> (traceID: String, flags: String, spanID: String)?
    where Bytes.Index == Int {
        guard bytes.count >= 55, bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"),
            bytes[52] == UInt8(ascii: "-"),
            isHex(bytes, 0..<2), isHex(bytes, 3..<35), isHex(bytes, 36..<52), isHex(bytes, 53..<55)
        else { return nil }
        let version = String(decoding: bytes[0..<2], as: UTF8.self)
        guard version != "ff", bytes.count == 55 || (version != "00" && bytes[55] == UInt8(ascii: "-")) else { return nil }
        guard !allZero(bytes[3..<35]), !allZero(bytes[36..<52]) else { return nil }
        return (
            String(decoding: bytes[3..<35], as: UTF8.self), String(decoding: bytes[53..<55], as: UTF8.self),
            String(decoding: bytes[36..<52], as: UTF8.self)
        )
    }

    /// Lowercase hex digits only; an index loop (a closure over a slice cost 20 instructions a byte).
    private static func isHex<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, _ range: Range<Int>) -> Bool
    where Bytes.Index == Int {
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = bytes[index]
            guard (byte &- 0x30) < 10 || (byte &- 0x61) < 6 else { return false }
            index += 1
        }
        return true
    }

    private static func allZero(_ bytes: some Sequence<UInt8>) -> Bool { bytes.allSatisfy { $0 == 0x30 } }

    /// `byteCount` random bytes as hex, never all zero.
    private static func newID(_ byteCount: Int, using random: inout some RandomNumberGenerator) -> String {
        while true {
            let id = RequestIdentifiers.hex(byteCount, using: &random)
            if id.utf8.contains(where: { $0 != 0x30 }) { return id }
        }
    }
}
