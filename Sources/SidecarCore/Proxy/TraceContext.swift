/// W3C trace context for one hop (`traceparent: 00-<trace-id>-<span-id>-<flags>`): the
/// caller's trace continues with a new span id for what this sidecar sends on, so every hop
/// is its own span of the same trace; a request without a valid `traceparent` starts a trace.
/// The access log carries both ids (`trace_id`, `span_id`); an exported span also names the
/// caller's span as its parent.
struct TraceContext: Equatable {
    /// The trace id's 16 bytes as two halves (its first 16 hex digits, then its last 16); not
    /// both zero. Ids are held as numbers and written as hex only where they leave (the
    /// `traceparent` header, the access log, exported spans): per request, no id strings.
    let traceHigh: UInt64
    let traceLow: UInt64
    /// The span this hop sends on; not zero.
    let span: UInt64
    /// The trace flags (bit 0: sampled).
    let flagBits: UInt8
    /// The caller's span (from its `traceparent`); nil when this hop started the trace.
    var parentSpan: UInt64? = nil

    /// 32 lowercase hex digits.
    var traceID: String { Self.hex([traceHigh, traceLow]) }
    /// 16 lowercase hex digits: the span this hop sends on.
    var spanID: String { Self.hex([span]) }
    /// The caller's span as 16 hex digits; nil when this hop started the trace.
    var parentSpanID: String? { parentSpan.map { Self.hex([$0]) } }
    /// 2 hex digits.
    var flags: String { String(decoding: [HTTPGrammar.hexDigit(flagBits >> 4), HTTPGrammar.hexDigit(flagBits & 0x0f)], as: UTF8.self) }
    /// Bit 0 of the flags: the caller wants this trace recorded.
    var sampled: Bool { flagBits & 1 == 1 }

    init(traceHigh: UInt64, traceLow: UInt64, span: UInt64, flagBits: UInt8, parentSpan: UInt64? = nil) {
        self.traceHigh = traceHigh
        self.traceLow = traceLow
        self.span = span
        self.flagBits = flagBits
        self.parentSpan = parentSpan
    }

    /// From hex ids (tests, and anything that has them as text); nil when one is not valid hex
    /// of its length.
    init?(traceID: String, spanID: String, flags: String, parentSpanID: String? = nil) {
        let text = "00-\(traceID)-\(spanID)-\(flags)"
        guard let parsed = Self.parse(text) else { return nil }
        self.init(traceHigh: parsed.traceHigh, traceLow: parsed.traceLow, span: parsed.span, flagBits: parsed.flagBits)
        if let parentSpanID {
            guard let parent = Self.parse("00-\(traceID)-\(parentSpanID)-\(flags)") else { return nil }
            parentSpan = parent.span
        }
    }

    /// The header's value, built in place: `00-<trace>-<span>-<flags>`.
    var traceparent: String {
        String(unsafeUninitializedCapacity: 55) { out in
            let base = out.baseAddress!
            base[0] = UInt8(ascii: "0")
            base[1] = UInt8(ascii: "0")
            base[2] = UInt8(ascii: "-")
            HTTPGrammar.writeHex(traceHigh, to: base + 3)
            HTTPGrammar.writeHex(traceLow, to: base + 19)
            base[35] = UInt8(ascii: "-")
            HTTPGrammar.writeHex(span, to: base + 36)
            base[52] = UInt8(ascii: "-")
            base[53] = HTTPGrammar.hexDigit(flagBits >> 4)
            base[54] = HTTPGrammar.hexDigit(flagBits & 0x0f)
            return 55
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

    private static func nextHop(after received: TraceContext?, using random: inout some RandomNumberGenerator) -> TraceContext {
        let span = nonZero(using: &random)
        if let received {
            return TraceContext(
                traceHigh: received.traceHigh, traceLow: received.traceLow, span: span, flagBits: received.flagBits,
                parentSpan: received.span)
        }
        return TraceContext(traceHigh: random.next(), traceLow: nonZero(using: &random), span: span, flagBits: 1)
    }

    /// A valid `traceparent` (W3C Trace Context §3.2) as a context whose `span` is the caller's:
    /// version 00 is exactly 55 characters; a later version may append `-…`, and its first
    /// four fields are read as version 00's. Version `ff`, uppercase or non-hex digits, and
    /// all-zero ids are invalid.
    static func parse(_ value: String) -> TraceContext? {
        value.utf8.withContiguousStorageIfAvailable { parse(bytes: UnsafeRawBufferPointer($0)) }
            ?? Array(value.utf8).withUnsafeBytes { parse(bytes: $0) }
    }

    private static func parse(bytes: UnsafeRawBufferPointer) -> TraceContext? {
        guard bytes.count >= 55, bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"),
            bytes[52] == UInt8(ascii: "-"),
            let version = hexValue(bytes, 0, count: 2), let high = hexValue(bytes, 3, count: 16),
            let low = hexValue(bytes, 19, count: 16), let span = hexValue(bytes, 36, count: 16),
            let flags = hexValue(bytes, 53, count: 2)
        else { return nil }
        guard version != 0xff, bytes.count == 55 || (version != 0 && bytes[55] == UInt8(ascii: "-")) else { return nil }
        guard high | low != 0, span != 0 else { return nil }
        return TraceContext(traceHigh: high, traceLow: low, span: span, flagBits: UInt8(truncatingIfNeeded: flags))
    }

    /// `count` (≤16) lowercase hex digits at `start` as a number; nil when one is not.
    private static func hexValue(_ bytes: UnsafeRawBufferPointer, _ start: Int, count: Int) -> UInt64? {
        if count == 16 {  // the ids: two words of eight digits
            guard let high = HTTPGrammar.hexValue(ofWord: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: start, as: UInt64.self))),
                let low = HTTPGrammar.hexValue(ofWord: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: start + 8, as: UInt64.self)))
            else { return nil }
            return UInt64(high) << 32 | UInt64(low)
        }
        var value: UInt64 = 0
        for index in start..<start + count {
            let byte = bytes[index]
            let digit: UInt8
            if byte &- 0x30 < 10 {
                digit = byte &- 0x30
            } else if byte &- 0x61 < 6 {
                digit = byte &- 0x61 &+ 10
            } else {
                return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    private static func nonZero(using random: inout some RandomNumberGenerator) -> UInt64 {
        while true {
            let value: UInt64 = random.next()
            if value != 0 { return value }
        }
    }

    private static func hex(_ words: [UInt64]) -> String {
        String(unsafeUninitializedCapacity: 16 * words.count) { out in
            for (index, word) in words.enumerated() { HTTPGrammar.writeHex(word, to: out.baseAddress! + 16 * index) }
            return 16 * words.count
        }
    }

}
