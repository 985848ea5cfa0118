import MeshTestSupport
import Testing
@testable import SidecarCore

/// The tag resolver's hand-written int, float and timestamp matchers against the patterns they
/// stand for (Yams' `Resolver.Rule`s, here as Swift `Regex` matched by code point, as ICU did):
/// the YAML 1.1 examples, then random texts over the characters the patterns care about.
@Suite(.cpuBound) struct YAMLScalarPatternsTests {
    static let int = oracle(
        "[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
            + "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+")
    static let float = oracle(
        "[-+]?(?:[0-9][0-9_]*)(?:\\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\\.[0-9_]+(?:[eE][-+][0-9]+)?"
            + "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN)")
    static let timestamp = oracle(
        "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
            + "|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \\t]+)[0-9][0-9]?"
            + ":[0-9][0-9]:[0-9][0-9](?:\\.[0-9]*)?(?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?")

    static func oracle(_ pattern: String) -> @Sendable (String) -> Bool {
        { text in
            // swiftlint:disable:next force_try
            let regex = try! Regex(pattern).matchingSemantics(.unicodeScalar)
            return (try? regex.wholeMatch(in: text)) != nil
        }
    }

    func expectAgree(_ text: String) {
        #expect(YAMLScalarPatterns.isInt(text) == Self.int(text), "int: \(text.debugDescription)")
        #expect(YAMLScalarPatterns.isFloat(text) == Self.float(text), "float: \(text.debugDescription)")
        #expect(YAMLScalarPatterns.isTimestamp(text) == Self.timestamp(text), "timestamp: \(text.debugDescription)")
    }

    @Test func yaml11Examples() {
        let examples = [
            "0", "12", "-12", "+12", "012", "0o14", "0x_0A_74_AE", "0b1010_0111_0100_1010_1110", "190:20:30", "685_230",
            "1.0", "-1.5e+3", "6.8523015e+5", "685.230_15e+03", "190:20:30.15", ".inf", "-.inf", "+.Inf", ".NaN", ".5",
            ".5e+3", "1e3", "1.", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
            "2001-12-15 2:59:43.10", "2002-12-14T00:00:00Z", "1:60", "1:5:9", "0:30", "08", "0x", "0b", "-", "+.",
            "1_000", "1__", "_1", "1e", "1e+", "1.2.3", "127.0.0.1:0", "10.0.0.1", "80", "8080", "1.5s", "250ms",
            "2001-1-1 1:00:00", "2001-1-1", "2001-12-14  21:59:43Z", "2001-12-14T21:59:43 +05:", "2001-12-14T21:59:43+1",
            "٣", "1٣", "",
        ]
        for text in examples { expectAgree(text) }
    }

    /// Seconds of regular-expression work in a debug build: it yields now and then, so the
    /// parallel suites' tasks waiting for the same cooperative threads are not starved.
    @Test func randomTextsAgree() async {
        let alphabet = Array("0123456789_-+.:eExXoObBaFfTtZ \tinINfFNa")
        var generator = SystemRandomNumberGenerator()
        for index in 0..<4_000 {
            if index % 100 == 0 { await Task.yield() }
            let length = Int.random(in: 1...12, using: &generator)
            expectAgree(String((0..<length).map { _ in alphabet.randomElement(using: &generator)! }))
        }
        // Shaped like the patterns: digits with separators in the places they use.
        let pieces = ["1", "0", "5", "9", "12", "59", "60", "2001", "-", "+", ":", ".", "_", "e", "e+", "T", " ", "Z", "x", "o", "b"]
        for index in 0..<4_000 {
            if index % 100 == 0 { await Task.yield() }
            let count = Int.random(in: 1...8, using: &generator)
            expectAgree((0..<count).map { _ in pieces.randomElement(using: &generator)! }.joined())
        }
    }

    @Test func resolvedTags() {
        #expect(YAMLTag.resolve("80") == .int)
        #expect(YAMLTag.resolve("0.5") == .float)
        #expect(YAMLTag.resolve("yes") == .bool)
        #expect(YAMLTag.resolve("~") == .null)
        #expect(YAMLTag.resolve("") == .null)
        #expect(YAMLTag.resolve("2001-12-14") == .timestamp)
        #expect(YAMLTag.resolve("127.0.0.1:80") == .str)
        #expect(YAMLTag.resolve("250ms") == .str)
    }
}
