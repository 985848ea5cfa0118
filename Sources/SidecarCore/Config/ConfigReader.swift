
/// Reads typed values out of a composed YAML node tree and records every problem as a
/// `ConfigIssue` with the key path and line, instead of stopping at the first.
///
/// Each reader method returns nil when the value is absent or wrong (having recorded why),
/// so decoders read every field, fall back to defaults, and report all issues at the end.
/// Not thread-safe: one reader per decode call.
package final class ConfigReader {
    let file: String?
    private(set) var issues: [ConfigIssue] = []

    package init(file: String?) {
        self.file = file
    }

    func report(_ message: String, path: String, at node: YAMLNode?) {
        report(message, path: path, mark: node?.mark)
    }

    func report(_ message: String, path: String, mark: YAMLMark?) {
        issues.append(ConfigIssue(file: file, line: mark?.line, column: mark?.column, path: path, message: message))
    }

    /// Prefixes the path of every issue recorded since `start` (multi-document loading).
    func prefixIssues(from start: Int, with prefix: String) {
        for index in issues.indices where index >= start {
            let path = issues[index].path
            issues[index].path = path.isEmpty ? prefix : "\(prefix): \(path)"
        }
    }

    package func error() -> ConfigError? {
        issues.isEmpty ? nil : ConfigError(issues: issues)
    }

    // MARK: Node kinds

    func mapping(_ node: YAMLNode, path: String) -> MappingReader? {
        guard let mapping = node.mapping else {
            report("expected a mapping, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
        return MappingReader(mapping, node: node, path: path, reader: self)
    }

    /// Elements with their paths (`rules[0]`).
    func list(_ node: YAMLNode, path: String) -> [(node: YAMLNode, path: String)]? {
        guard let sequence = node.sequence else {
            report("expected a list, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
        return sequence.enumerated().map { ($0.element, "\(path)[\($0.offset)]") }
    }

    // MARK: Scalars

    /// Any scalar's text (a plain `1` or `true` is read as that text), but not a list or mapping.
    func string(_ node: YAMLNode, path: String) -> String? {
        guard let scalar = node.scalar else {
            report("expected a string, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
        return scalar.string
    }

    /// A plain integer scalar within `range`; a quoted `"80"` is a string, not an integer.
    func int(_ node: YAMLNode, path: String, range: ClosedRange<Int>) -> Int? {
        guard let scalar = node.scalar, Self.isPlain(scalar), Self.tagName(node) == .int,
              let value = Int(scalar.string)
        else {
            report("expected an integer, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
        guard range.contains(value) else {
            let bounds = range.upperBound == Int.max
                ? "below the minimum of \(range.lowerBound)" : "out of range \(range.lowerBound)..\(range.upperBound)"
            report("\(value) is \(bounds)", path: path, at: node)
            return nil
        }
        return value
    }

    /// A share of traffic: a plain number from 0 to 100.
    func percent(_ node: YAMLNode, path: String) -> Double? {
        guard let scalar = node.scalar, Self.isPlain(scalar),
              Self.tagName(node) == .int || Self.tagName(node) == .float,
              let value = Double(scalar.string), value.isFinite
        else {
            report("expected a percent from 0 to 100, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
        guard (0...100).contains(value) else {
            report("\(scalar.string) is out of range 0–100 (a percent)", path: path, at: node)
            return nil
        }
        return value
    }

    func bool(_ node: YAMLNode, path: String) -> Bool? {
        guard let scalar = node.scalar, Self.isPlain(scalar) else {
            report("expected true or false, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
        switch scalar.string {
        case "true": return true
        case "false": return false
        default:
            report("expected true or false, got \(Self.describe(node))", path: path, at: node)
            return nil
        }
    }

    func duration(_ node: YAMLNode, path: String, allowZero: Bool = false) -> MeshDuration? {
        guard let text = string(node, path: path) else { return nil }
        guard let duration = MeshDuration(parsing: text) else {
            report("\"\(text)\" is not a duration (\(MeshDuration.formatHint))", path: path, at: node)
            return nil
        }
        guard allowZero || duration > .zero else {
            report("must be longer than 0s", path: path, at: node)
            return nil
        }
        return duration
    }

    func oneOf<Value: RawRepresentable & CaseIterable>(_ node: YAMLNode, path: String) -> Value?
    where Value.RawValue == String {
        guard let text = string(node, path: path) else { return nil }
        guard let value = Value(rawValue: text) else {
            let allowed = Value.allCases.map(\.rawValue).joined(separator: ", ")
            report("\"\(text)\" is not one of: \(allowed)", path: path, at: node)
            return nil
        }
        return value
    }

    func hostPort(_ node: YAMLNode, path: String) -> HostPort? {
        guard let text = string(node, path: path) else { return nil }
        switch HostPort.parse(text) {
        case .success(let address): return address
        case .failure(let error):
            report("\"\(text)\" \(error.reason)", path: path, at: node)
            return nil
        }
    }

    /// A mapping of string keys to string values (labels, headers).
    func stringMap(_ node: YAMLNode, path: String) -> [String: String]? {
        guard let map = mapping(node, path: path) else { return nil }
        var result: [String: String] = [:]
        for (key, value) in map.entries {
            guard keyFits(key, path: "\(path).\(key)", at: value) else { continue }
            if let text = string(value, path: "\(path).\(key)") {
                result[key] = text
            }
        }
        return result
    }

    /// Longest key of a label or header mapping, in characters. libyaml reads a key only
    /// within 1024 characters of its `:`, and the YAML and JSON we write (snapshots,
    /// `get -o yaml|json`) must read back: 128 characters stay under that even when every one
    /// is written as a `\uXXXX` escape.
    package static let maxKeyLength = 128

    /// Reports a key longer than `maxKeyLength`.
    func keyFits(_ key: String, path: String, at node: YAMLNode) -> Bool {
        guard key.count > Self.maxKeyLength else { return true }
        report("key \"\(key.prefix(32))…\" is longer than \(Self.maxKeyLength) characters", path: path, at: node)
        return false
    }

    func stringList(_ node: YAMLNode, path: String) -> [String]? {
        guard let elements = list(node, path: path) else { return nil }
        return elements.compactMap { string($0.node, path: $0.path) }
    }

    // MARK: Size

    /// Most nodes a document may expand to. Aliases are expanded by sharing, so a few lines of
    /// `&a [*b, *b, …]` can stand for billions of nodes ("billion laughs"); walking those
    /// would hang the control plane. Real configs are far below this.
    static let maxNodes = 200_000

    /// An issue if `root` expands to more than `maxNodes` nodes; stops counting at the limit.
    static func sizeIssue(_ root: YAMLNode, file: String?) -> ConfigIssue? {
        var budget = maxNodes
        var stack = [root]
        while let node = stack.popLast() {
            budget -= 1
            if budget < 0 {
                return ConfigIssue(file: file, line: root.mark?.line, column: root.mark?.column, path: "",
                                   message: "document too large: more than \(maxNodes) values (after expanding aliases)")
            }
            switch node {
            case .mapping(let mapping):
                for (key, value) in mapping { stack.append(key); stack.append(value) }
            case .sequence(let sequence): stack.append(contentsOf: sequence)
            case .scalar: break
            }
        }
        return nil
    }

    // MARK: Describing

    /// The resolved tag: what a plain scalar reads as (`int`, `float`, `bool`, `null`, `str`).
    static func tagName(_ node: YAMLNode) -> YAMLTag {
        YAMLTag(rawValue: node.tag.rawValue)
    }

    static func isPlain(_ scalar: YAMLNode.Scalar) -> Bool {
        scalar.style == .plain || scalar.style == .any
    }

    static func isNull(_ node: YAMLNode) -> Bool {
        guard let scalar = node.scalar, isPlain(scalar) else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// How a value reads in an error message: `a mapping`, `a list`, `"abc"`, `42`.
    static func describe(_ node: YAMLNode) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let scalar):
            if isNull(node) { return "null" }
            if isPlain(scalar), [.int, .float, .bool].contains(Self.tagName(node)) { return scalar.string }
            return "\"\(scalar.string)\""
        }
    }
}
