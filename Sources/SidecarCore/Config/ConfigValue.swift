/// A plain data tree (mappings keep key order) that resources are encoded into, and its two
/// text forms: canonical block YAML and compact JSON. Both read back through the decoders.
///
/// Strings that YAML would read as something else (`"1"`, `true`, `null`, `: `) are written
/// double-quoted with JSON escapes, which YAML accepts.
public indirect enum ConfigValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case number(Double)
    case bool(Bool)
    case list([ConfigValue])
    case map([(String, ConfigValue)])

    public static func == (lhs: ConfigValue, rhs: ConfigValue) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): a == b
        case let (.int(a), .int(b)): a == b
        case let (.number(a), .number(b)): a == b
        case let (.bool(a), .bool(b)): a == b
        case let (.list(a), .list(b)): a == b
        case let (.map(a), .map(b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// A string map with keys sorted, so output is stable.
    static func sortedMap(_ dictionary: [String: String]) -> ConfigValue {
        .map(dictionary.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
    }

    /// A percent as an integer when whole (`10`), else a decimal (`12.5`).
    static func percent(_ value: Double) -> ConfigValue {
        value.rounded() == value && abs(value) < 1e15 ? .int(Int(value)) : .number(value)
    }

    // MARK: JSON

    public var json: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    private func writeJSON(into out: inout String) {
        switch self {
        case .string(let text): out += Self.quoted(text)
        case .int(let value): out += String(value)
        case .number(let value): out += String(value)
        case .bool(let value): out += value ? "true" : "false"
        case .list(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.writeJSON(into: &out)
            }
            out += "]"
        case .map(let pairs):
            out += "{"
            for (index, pair) in pairs.enumerated() {
                if index > 0 { out += "," }
                out += Self.quoted(pair.0) + ":"
                pair.1.writeJSON(into: &out)
            }
            out += "}"
        }
    }

    /// Every scalar YAML does not print as itself in a quoted scalar: C0 and C1 controls, NEL
    /// (U+0085, a line break to YAML), the line and paragraph separators, the BOM and the
    /// noncharacters U+FFFE/U+FFFF. Escaped as `\uXXXX`, the text reads back unchanged through
    /// both JSON and YAML parsers (found by the snapshot fuzz target).
    static func needsUnicodeEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028
            || scalar.value == 0x2029 || scalar.value == 0xFEFF || scalar.value >= 0xFFFE && scalar.value <= 0xFFFF
    }

    /// A JSON string literal; also a valid YAML double-quoted scalar. The one JSON string
    /// quoting of the project (access log, admin, control-plane bodies): `[UInt8].appendJSONString`.
    public static func quoted(_ text: String) -> String {
        var bytes: [UInt8] = []
        bytes.appendJSONString(text)
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: YAML

    /// Block YAML ending in a newline; empty lists and mappings are written `[]` and `{}`.
    public var yaml: String {
        var out = ""
        switch self {
        case .map(let pairs) where !pairs.isEmpty: writeYAMLMap(pairs, indent: 0, into: &out)
        case .list(let items) where !items.isEmpty: writeYAMLList(items, indent: 0, into: &out)
        default: out = inlineYAML + "\n"
        }
        return out
    }

    private var isBlock: Bool {
        switch self {
        case .map(let pairs): !pairs.isEmpty
        case .list(let items): !items.isEmpty
        default: false
        }
    }

    /// Scalars and empty collections.
    private var inlineYAML: String {
        switch self {
        case .string(let text): Self.yamlScalar(text)
        case .int(let value): String(value)
        case .number(let value): String(value)
        case .bool(let value): value ? "true" : "false"
        case .list: "[]"
        case .map: "{}"
        }
    }

    private func writeYAMLMap(_ pairs: [(String, ConfigValue)], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for (key, value) in pairs {
            out += pad + Self.yamlScalar(key) + ":"
            switch value {
            case .map(let inner) where !inner.isEmpty:
                out += "\n"
                writeYAMLMap(inner, indent: indent + 2, into: &out)
            case .list(let items) where !items.isEmpty:
                out += "\n"
                writeYAMLList(items, indent: indent + 2, into: &out)
            default:
                out += " " + value.inlineYAML + "\n"
            }
        }
    }

    private func writeYAMLList(_ items: [ConfigValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            switch item {
            case .map(let inner) where !inner.isEmpty:
                // "- " then the first key on the same line, the rest aligned under it.
                var nested = ""
                writeYAMLMap(inner, indent: indent + 2, into: &nested)
                out += pad + "- " + nested.dropFirst(indent + 2)
            case .list(let inner) where !inner.isEmpty:
                out += pad + "-\n"
                writeYAMLList(inner, indent: indent + 2, into: &out)
            default:
                out += pad + "- " + item.inlineYAML + "\n"
            }
        }
    }

    /// Plain when YAML reads it back as the same string, double-quoted otherwise.
    static func yamlScalar(_ text: String) -> String {
        isPlainSafe(text) ? text : quoted(text)
    }

    private static let reservedWords: Set<String> = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ]

    /// Conservative: identifiers, paths and durations stay plain; anything YAML might read as
    /// a number, bool or null, or that holds syntax characters, is quoted.
    private static func isPlainSafe(_ text: String) -> Bool {
        guard let first = text.first, text.last != ":", isSafeBody(text) else { return false }
        guard !reservedWords.contains(text.lowercased()) else { return false }
        if first.isNumber { return MeshDuration(parsing: text) != nil }
        return first.isLetter || first == "/" || first == "_"
    }

    private static func isSafeBody(_ text: String) -> Bool {
        text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_./:".contains($0)) }
            && !text.contains(": ") && !text.contains(" #")
    }
}
