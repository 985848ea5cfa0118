
/// One YAML mapping being decoded: hands out values by key, remembers which keys the decoder
/// asked for, and on `finish()` reports every other key as unknown (with a "did you mean").
///
/// A key whose value is `null` (or empty) counts as absent. Non-string keys are reported.
final class MappingReader {
    let node: YAMLNode
    let path: String
    let reader: ConfigReader
    /// Keys in document order with their key node (for the line) and value.
    private let pairs: [(key: String, keyNode: YAMLNode, value: YAMLNode)]
    private var askedFor: [String] = []

    init(_ mapping: YAMLNode.Mapping, node: YAMLNode, path: String, reader: ConfigReader) {
        self.node = node
        self.path = path
        self.reader = reader
        var pairs: [(key: String, keyNode: YAMLNode, value: YAMLNode)] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                reader.report("keys must be strings, got \(ConfigReader.describe(key))", path: path, at: key)
                continue
            }
            pairs.append((name, key, value))
        }
        self.pairs = pairs
    }

    /// Every entry, for free-form mappings (labels, headers); marks them all as known.
    var entries: [(key: String, value: YAMLNode)] {
        askedFor.append(contentsOf: pairs.map(\.key))
        return pairs.map { ($0.key, $0.value) }
    }

    var isEmpty: Bool { pairs.isEmpty }

    func childPath(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The value of `key`, or nil if absent or null.
    func optional(_ key: String) -> YAMLNode? {
        askedFor.append(key)
        guard let value = pairs.first(where: { $0.key == key })?.value, !ConfigReader.isNull(value) else {
            return nil
        }
        return value
    }

    func has(_ key: String) -> Bool {
        pairs.contains { $0.key == key && !ConfigReader.isNull($0.value) }
    }

    /// The value of `key`; reports `<path>.<key>: is required` when absent.
    func required(_ key: String) -> YAMLNode? {
        guard let value = optional(key) else {
            reader.report("is required", path: childPath(key), at: node)
            return nil
        }
        return value
    }

    // MARK: Typed shorthands

    func string(_ key: String, required: Bool = false) -> String? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.string(value, path: childPath(key))
    }

    func int(_ key: String, range: ClosedRange<Int>, required: Bool = false) -> Int? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.int(value, path: childPath(key), range: range)
    }

    func percent(_ key: String, required: Bool = false) -> Double? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.percent(value, path: childPath(key))
    }

    func bool(_ key: String) -> Bool? {
        optional(key).flatMap { reader.bool($0, path: childPath(key)) }
    }

    func duration(_ key: String, required: Bool = false, allowZero: Bool = false) -> MeshDuration? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.duration(value, path: childPath(key), allowZero: allowZero)
    }

    func oneOf<Value: RawRepresentable & CaseIterable>(_ key: String, required: Bool = false) -> Value?
    where Value.RawValue == String {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.oneOf(value, path: childPath(key))
    }

    func hostPort(_ key: String, required: Bool = false) -> HostPort? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.hostPort(value, path: childPath(key))
    }

    func stringMap(_ key: String) -> [String: String]? {
        optional(key).flatMap { reader.stringMap($0, path: childPath(key)) }
    }

    func stringList(_ key: String) -> [String]? {
        optional(key).flatMap { reader.stringList($0, path: childPath(key)) }
    }

    func mapping(_ key: String, required: Bool = false) -> MappingReader? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.mapping(value, path: childPath(key))
    }

    func list(_ key: String, required: Bool = false) -> [(node: YAMLNode, path: String)]? {
        guard let value = required ? self.required(key) : optional(key) else { return nil }
        return reader.list(value, path: childPath(key))
    }

    // MARK: Unknown keys

    /// Reports every key the decoder never asked for.
    func finish() {
        for pair in pairs where !askedFor.contains(pair.key) {
            let hint: String
            if let guess = Self.closest(to: pair.key, in: askedFor) {
                hint = "did you mean \"\(guess)\"?"
            } else {
                hint = "allowed: " + Self.unique(askedFor).joined(separator: ", ")
            }
            reader.report("unknown key (\(hint))", path: childPath(pair.key), at: pair.keyNode)
        }
    }

    private static func unique(_ keys: [String]) -> [String] {
        var seen = Set<String>()
        return keys.filter { seen.insert($0).inserted }
    }

    /// The known key within edit distance 2 (case-insensitive), if any.
    static func closest(to key: String, in known: [String]) -> String? {
        let candidates = unique(known).map { ($0, editDistance(key.lowercased(), $0.lowercased())) }
        guard let best = candidates.min(by: { $0.1 < $1.1 }), best.1 <= 2 else { return nil }
        return best.0
    }

    static func editDistance(_ lhs: String, _ rhs: String) -> Int {
        let a = Array(lhs), b = Array(rhs)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            previous = current
        }
        return previous[b.count]
    }
}
