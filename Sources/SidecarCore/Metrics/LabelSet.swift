/// The label pairs of one series, validated and escaped once when the series is made, so
/// exposition copies ready text and the hot path never sees a label.
///
/// Values must come from a bounded set (service names, status codes, reason words): never a
/// path, an address or anything a client chose.
public struct LabelSet: Sendable, Hashable, Comparable {
    public let names: [String]
    public let values: [String]
    /// `name="value",…` with values escaped per the text format; empty for no labels.
    public let rendered: String

    public init(names: [String], values: [String]) {
        precondition(names.count == values.count, "labels \(names) given values \(values)")
        for name in names {
            precondition(LabelSet.isValidName(name), "invalid label name \(name)")
        }
        self.names = names
        self.values = values
        rendered = zip(names, values).map { "\($0)=\"\(LabelSet.escape($1))\"" }.joined(separator: ",")
    }

    public static let empty = LabelSet(names: [], values: [])

    public static func < (lhs: LabelSet, rhs: LabelSet) -> Bool {
        lhs.values.lexicographicallyPrecedes(rhs.values)
    }

    /// Text format 0.0.4 label value escaping: backslash, double quote and line feed.
    public static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == 0x0A })
        else { return value }
        var escaped = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with the reserved `__`.
    public static func isValidName(_ name: String) -> Bool {
        MetricDescriptor.isValidName(name, allowColon: false) && !name.hasPrefix("__")
    }
}
