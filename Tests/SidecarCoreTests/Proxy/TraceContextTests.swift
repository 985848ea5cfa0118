import Testing

@testable import SidecarCore

/// W3C trace context per hop: the caller's trace id and flags go on with a new span id; an
/// invalid or missing `traceparent` starts a new trace.
@Suite struct TraceContextTests {
    static let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test func aValidTraceContinuesWithANewSpan() {
        var random = LoopRandom(seed: 1)
        let next = TraceContext.nextHop(after: Self.caller, using: &random)
        #expect(next.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(next.flags == "01")
        #expect(next.spanID != "00f067aa0ba902b7")
        #expect(next.spanID.utf8.count == 16)
        #expect(TraceContext.parse(next.traceparent)?.traceID == next.traceID)
        let again = TraceContext.nextHop(after: next.traceparent, using: &random)
        #expect(again.traceID == next.traceID && again.spanID != next.spanID, "each hop its own span")
    }

    @Test func unsampledFlagsAreKept() {
        var random = LoopRandom(seed: 2)
        let next = TraceContext.nextHop(after: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", using: &random)
        #expect(next.flags == "00")
    }

    @Test(arguments: [
        "", "garbage", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // version 00 is exact
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ])
    func anInvalidTraceparentStartsANewTrace(_ value: String) {
        var random = LoopRandom(seed: 3)
        let next = TraceContext.nextHop(after: value, using: &random)
        #expect(next.traceID != "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(next.traceID.utf8.count == 32 && next.flags == "01")
        #expect(TraceContext.parse(value) == nil)
    }

    @Test func aLaterVersionIsReadAsVersion00() {
        let parsed = TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later")
        #expect(parsed?.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
    }
}

/// Ids are held as numbers: their hex comes back exactly, leading zeros and all.
@Suite struct TraceContextHexTests {
    @Test(arguments: [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000001-0000000000000001-00",
        "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff", "00-0123456789abcdef0000000000000000-0a0b0c0d0e0f0102-03",
    ])
    func theHeaderComesBackAsItWasSent(_ value: String) throws {
        let context = try #require(TraceContext.parse(value))
        #expect(context.traceparent == value)
        #expect(context.traceID == String(value.dropFirst(3).prefix(32)))
        #expect(context.spanID == String(value.dropFirst(36).prefix(16)))
        #expect(context.flags == String(value.suffix(2)))
        #expect(TraceContext(traceID: context.traceID, spanID: context.spanID, flags: context.flags) == context)
    }

    /// Request ids share the writer: 32 lowercase hex digits, a new one each time.
    @Test func requestIDsAre32LowercaseHexDigits() {
        var random = LoopRandom(seed: 7)
        let ids = (0..<100).map { _ in RequestIdentifiers.requestID(using: &random) }
        #expect(ids.allSatisfy { $0.utf8.count == 32 && $0.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) } })
        #expect(Set(ids).count == 100)
        #expect(Set(ids.joined()).count == 16, "every digit appears")
    }

    @Test func invalidHexIsNotAContext() {
        #expect(TraceContext(traceID: "4BF92F3577B34DA6A3CE929D0E0E4736", spanID: "00f067aa0ba902b7", flags: "01") == nil)
        #expect(TraceContext(traceID: "4bf92f3577b34da6", spanID: "00f067aa0ba902b7", flags: "01") == nil)
        #expect(TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01") == nil)
    }

    /// The ids are read eight digits at a time: every byte value at every position of a word
    /// is accepted exactly when it is a lowercase hex digit, and the number is the digits'.
    @Test func aWordOfHexDigitsReadsAsTheDigitsSay() {
        let digits = Array("0123456789abcdef".utf8)
        func word(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) } }
        var random = LoopRandom(seed: 11)
        for _ in 0..<200 {
            let value = UInt32(truncatingIfNeeded: random.next() as UInt64)
            let spelled = (0..<8).map { digits[Int(value >> UInt32(28 - 4 * $0) & 0xF)] }
            #expect(HTTPGrammar.hexValue(ofWord: word(spelled)) == value)
        }
        for position in 0..<8 {
            for byte in 0...255 {
                var spelled = Array("9f0a5e1b".utf8)
                spelled[position] = UInt8(byte)
                let valid = digits.contains(UInt8(byte))
                #expect((HTTPGrammar.hexValue(ofWord: word(spelled)) != nil) == valid, "byte \(byte) at \(position)")
            }
        }
    }
}

/// The caller's span becomes the parent of this hop's (an exported span's `parentSpanId`).
@Suite struct TraceContextParentTests {
    @Test func theCallersSpanIsTheParentAndANewTraceHasNone() {
        var random = LoopRandom(seed: 5)
        let next = TraceContext.nextHop(after: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", using: &random)
        #expect(next.parentSpanID == "00f067aa0ba902b7")
        #expect(next.spanID != "00f067aa0ba902b7")
        #expect(next.sampled)
        #expect(TraceContext.nextHop(after: nil, using: &random).parentSpanID == nil)
        #expect(!TraceContext.nextHop(after: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", using: &random).sampled)
    }
}
