/// The YAML 1.1 int, float and timestamp patterns of the tag resolver (Yams' and PyYAML's
/// `Resolver` rules), matched by hand over the scalar's bytes: a regex engine would be one
/// more library's pages in every sidecar for three patterns. Each function is its pattern,
/// quoted above it; every alternative is tried in turn against the whole text. ASCII only, as
/// the patterns are (a non-ASCII byte never matches).
///
/// `YAMLScalarPatternsTests` checks these against the patterns themselves (as Swift `Regex`).
package enum YAMLScalarPatterns {
    /// `[-+]?0b[0-1_]+ | [-+]?0o?[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+
    /// | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+`
    package static func isInt(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return whole(bytes) { s in s.sign(); return s.take("0") && s.take("b") && s.many1(isBinary) }
            || whole(bytes) { s in s.sign(); guard s.take("0") else { return false }; _ = s.take("o"); return s.many1(isOctal) }
            || whole(bytes) { s in s.sign(); return s.take("0") || (s.one(isNonZeroDigit) && s.many0(isDigitOrUnderscore)) }
            || whole(bytes) { s in s.sign(); return s.take("0") && s.take("x") && s.many1(isHexOrUnderscore) }
            || whole(bytes) { s in
                s.sign()
                return s.one(isNonZeroDigit) && s.many0(isDigitOrUnderscore) && s.sexagesimalGroups()
            }
    }

    /// `[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)? | \.[0-9_]+(?:[eE][-+][0-9]+)?
    /// | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)`
    package static func isFloat(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return whole(bytes) { s in
                s.sign()
                guard s.one(isDigit) else { return false }
                _ = s.many0(isDigitOrUnderscore)
                if s.take(".") { _ = s.many0(isDigitOrUnderscore) }
                return s.exponent(signRequired: false)
            }
            || whole(bytes) { s in s.take(".") && s.many1(isDigitOrUnderscore) && s.exponent(signRequired: true) }
            || whole(bytes) { s in
                s.sign()
                return s.one(isDigit) && s.many0(isDigitOrUnderscore) && s.sexagesimalGroups() && s.take(".")
                    && s.many0(isDigitOrUnderscore)
            }
            || whole(bytes) { s in s.sign(); return s.take(".") && s.word(["inf", "Inf", "INF"]) }
            || whole(bytes) { s in s.take(".") && s.word(["nan", "NaN", "NAN"]) }
    }

    /// `[0-9]{4}-[0-9]{2}-[0-9]{2} | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}
    /// :[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?`
    package static func isTimestamp(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return whole(bytes) { s in
                s.digits(4) && s.take("-") && s.digits(2) && s.take("-") && s.digits(2)
            }
            || whole(bytes) { s in
                guard s.digits(4), s.take("-"), s.digits(1, upTo: 2), s.take("-"), s.digits(1, upTo: 2) else { return false }
                guard s.take("T") || s.take("t") || s.many1(isBlank) else { return false }
                guard s.digits(1, upTo: 2), s.take(":"), s.digits(2), s.take(":"), s.digits(2) else { return false }
                if s.take(".") { _ = s.many0(isDigit) }
                let beforeZone = s.index
                _ = s.many0(isBlank)
                if s.take("Z") { return true }
                if s.one({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }) {
                    guard s.digits(1, upTo: 2) else { return false }
                    let beforeMinutes = s.index
                    if !(s.take(":") && s.digits(2)) { s.index = beforeMinutes }
                    return true
                }
                s.index = beforeZone
                return true
            }
    }

    // MARK: Matching

    /// Whether `alternative`, run from the start, succeeds and ends at the end of `bytes`.
    private static func whole(_ bytes: [UInt8], _ alternative: (inout Cursor) -> Bool) -> Bool {
        var cursor = Cursor(bytes: bytes)
        return alternative(&cursor) && cursor.index == bytes.count
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    private static func isNonZeroDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(byte) }
    private static func isDigitOrUnderscore(_ byte: UInt8) -> Bool { isDigit(byte) || byte == UInt8(ascii: "_") }
    private static func isBinary(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "0") || byte == UInt8(ascii: "1") || byte == UInt8(ascii: "_")
    }
    private static func isOctal(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(byte) || byte == UInt8(ascii: "_")
    }
    private static func isHexOrUnderscore(_ byte: UInt8) -> Bool {
        isDigitOrUnderscore(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }
    private static func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }

    /// A position in the scalar's bytes; each step consumes only on success.
    private struct Cursor {
        let bytes: [UInt8]
        var index = 0

        mutating func one(_ matches: (UInt8) -> Bool) -> Bool {
            guard index < bytes.count, matches(bytes[index]) else { return false }
            index += 1
            return true
        }

        mutating func take(_ byte: Unicode.Scalar) -> Bool {
            one { $0 == UInt8(ascii: byte) }
        }

        /// Zero or more; always true (for chaining with `&&`).
        mutating func many0(_ matches: (UInt8) -> Bool) -> Bool {
            while one(matches) {}
            return true
        }

        mutating func many1(_ matches: (UInt8) -> Bool) -> Bool {
            guard one(matches) else { return false }
            return many0(matches)
        }

        /// `[-+]?`
        mutating func sign() {
            _ = one { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }
        }

        /// `count` digits, or between `count` and `upTo` (as many as there are).
        mutating func digits(_ count: Int, upTo: Int? = nil) -> Bool {
            for _ in 0..<count where !one(isDigit) { return false }
            for _ in count..<(upTo ?? count) where !one(isDigit) { break }
            return true
        }

        /// `(?::[0-5]?[0-9])+`. Two digits whenever two are there: after a group comes `:`, `.`
        /// or the end, never a digit, so taking one where two stand cannot lead to a match.
        mutating func sexagesimalGroups() -> Bool {
            var groups = 0
            while index < bytes.count, bytes[index] == UInt8(ascii: ":") {
                let start = index
                index += 1
                if index + 1 < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "5")).contains(bytes[index]),
                   isDigit(bytes[index + 1]) {
                    index += 2
                } else if !one(isDigit) {
                    index = start
                    break
                }
                groups += 1
            }
            return groups > 0
        }

        /// `(?:[eE][-+]?[0-9]+)?`, or with the sign required. An exponent that does not complete
        /// is left unconsumed (and then the text does not end there).
        mutating func exponent(signRequired: Bool) -> Bool {
            let start = index
            guard one({ $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) else { return true }
            let signed = one { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }
            if (signRequired && !signed) || !many1(isDigit) { index = start }
            return true
        }

        /// One of `words`, exactly.
        mutating func word(_ words: [String]) -> Bool {
            for word in words {
                let utf8 = Array(word.utf8)
                if bytes.count - index >= utf8.count, Array(bytes[index..<index + utf8.count]) == utf8 {
                    index += utf8.count
                    return true
                }
            }
            return false
        }
    }
}
