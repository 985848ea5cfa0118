internal import CYAML

/// A composed YAML node: what the config decoders read (through `ConfigReader`). Built from
/// libyaml's events by `YAMLParser`; aliases are resolved to the anchored node (shared, not
/// copied, so an alias costs nothing until walked: see `ConfigReader.sizeIssue`).
///
/// Tags resolve as the YAML 1.1 core schema does (`true`, `0x1f`, `1_000`, `~`, `.inf` …): a
/// plain `80` is an int, a quoted `"80"` a string. No Foundation: the sidecar links none.
package enum YAMLNode: Sendable {
    case scalar(Scalar)
    case mapping(Mapping)
    case sequence(Sequence)

    package struct Scalar: Sendable {
        package var string: String
        /// The resolved tag (`YAMLTag.int` for a plain `80`).
        package var tag: YAMLTag
        package var style: Style
        package var mark: YAMLMark?

        /// libyaml's `yaml_scalar_style_t`.
        package enum Style: Int32, Sendable {
            case any = 0, plain, singleQuoted, doubleQuoted, literal, folded
        }
    }

    package struct Mapping: Sendable, RandomAccessCollection {
        package var pairs: [(key: YAMLNode, value: YAMLNode)]
        package var tag: YAMLTag
        package var mark: YAMLMark?

        package var startIndex: Int { pairs.startIndex }
        package var endIndex: Int { pairs.endIndex }
        package subscript(position: Int) -> (key: YAMLNode, value: YAMLNode) { pairs[position] }

        /// The value of the string key `key` (a plain or quoted scalar that reads as a string).
        package subscript(key: String) -> YAMLNode? {
            let tag = YAMLTag.resolve(key)
            return pairs.last { pair in
                guard case .scalar(let scalar) = pair.key else { return false }
                return scalar.string == key && scalar.tag == tag
            }?.value
        }
    }

    package struct Sequence: Sendable, RandomAccessCollection, ExpressibleByArrayLiteral {
        package var nodes: [YAMLNode]
        package var tag: YAMLTag
        package var mark: YAMLMark?

        init(nodes: [YAMLNode], tag: YAMLTag, mark: YAMLMark?) {
            self.nodes = nodes
            self.tag = tag
            self.mark = mark
        }

        package init(arrayLiteral elements: YAMLNode...) {
            self.init(nodes: elements, tag: .seq, mark: nil)
        }

        package var startIndex: Int { nodes.startIndex }
        package var endIndex: Int { nodes.endIndex }
        package subscript(position: Int) -> YAMLNode { nodes[position] }
    }

    package var scalar: Scalar? {
        if case .scalar(let scalar) = self { return scalar }
        return nil
    }

    package var mapping: Mapping? {
        if case .mapping(let mapping) = self { return mapping }
        return nil
    }

    package var sequence: Sequence? {
        if case .sequence(let sequence) = self { return sequence }
        return nil
    }

    /// A scalar's text; nil for a mapping or list.
    package var string: String? { scalar?.string }

    package var tag: YAMLTag {
        switch self {
        case .scalar(let scalar): scalar.tag
        case .mapping(let mapping): mapping.tag
        case .sequence(let sequence): sequence.tag
        }
    }

    /// Where the node starts in the text.
    package var mark: YAMLMark? {
        switch self {
        case .scalar(let scalar): scalar.mark
        case .mapping(let mapping): mapping.mark
        case .sequence(let sequence): sequence.mark
        }
    }

    /// The value of the string key `key` when this is a mapping.
    package subscript(key: String) -> YAMLNode? {
        mapping?[key]
    }
}

/// A position in the text, both 1-based; columns count Unicode scalars (as libyaml does).
package struct YAMLMark: Sendable, Equatable {
    package var line: Int
    package var column: Int
}

/// A node's tag: `tag:yaml.org,2002:int` and friends, or an application tag as written.
package struct YAMLTag: Sendable, Hashable {
    package var rawValue: String

    package init(rawValue: String) {
        self.rawValue = rawValue
    }

    package static let str = YAMLTag(rawValue: "tag:yaml.org,2002:str")
    package static let int = YAMLTag(rawValue: "tag:yaml.org,2002:int")
    package static let float = YAMLTag(rawValue: "tag:yaml.org,2002:float")
    package static let bool = YAMLTag(rawValue: "tag:yaml.org,2002:bool")
    package static let null = YAMLTag(rawValue: "tag:yaml.org,2002:null")
    package static let merge = YAMLTag(rawValue: "tag:yaml.org,2002:merge")
    package static let timestamp = YAMLTag(rawValue: "tag:yaml.org,2002:timestamp")
    package static let value = YAMLTag(rawValue: "tag:yaml.org,2002:value")
    package static let map = YAMLTag(rawValue: "tag:yaml.org,2002:map")
    package static let seq = YAMLTag(rawValue: "tag:yaml.org,2002:seq")

    /// The tag of an untagged plain scalar: the YAML 1.1 rules in the order Yams (and PyYAML)
    /// try them (bool, int, float, merge, null, timestamp, value), else `str`.
    package static func resolve(_ text: String) -> YAMLTag {
        // Only these characters can start a non-string; most scalars stop here.
        guard let first = text.utf8.first else { return .null }
        switch first {
        case UInt8(ascii: "y"), UInt8(ascii: "Y"), UInt8(ascii: "n"), UInt8(ascii: "N"),
             UInt8(ascii: "t"), UInt8(ascii: "T"), UInt8(ascii: "f"), UInt8(ascii: "F"),
             UInt8(ascii: "o"), UInt8(ascii: "O"):
            if boolWords.contains(text) { return .bool }
            if nullWords.contains(text) { return .null }
            return .str
        case UInt8(ascii: "~"): return text == "~" ? .null : .str
        case UInt8(ascii: "<"): return text == "<<" ? .merge : .str
        case UInt8(ascii: "="): return text == "=" ? .value : .str
        case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "0")...UInt8(ascii: "9"):
            if YAMLScalarPatterns.isInt(text) { return .int }
            if YAMLScalarPatterns.isFloat(text) { return .float }
            if YAMLScalarPatterns.isTimestamp(text) { return .timestamp }
            return .str
        default: return .str
        }
    }

    private static let boolWords: Set<String> = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ]
    private static let nullWords: Set<String> = ["null", "Null", "NULL"]
}

/// A YAML syntax error from libyaml (or the composer: an undefined alias, a second document
/// where one was expected, a duplicate key), with libyaml's own wording.
package struct YAMLError: Error, Sendable {
    package enum Kind: Sendable {
        /// Invalid bytes (not UTF-8): no line.
        case reader
        case scanner, parser, composer
        case memory
        /// Keys that occur more than once in one mapping (sorted); `mark` is the first's.
        case duplicateKeys([String])
    }

    package var kind: Kind
    package var problem: String
    package var mark: YAMLMark?
    /// What was open ("while parsing a flow mapping") and where it started.
    package var context: (text: String, mark: YAMLMark)?
}

/// Composes the documents of a YAML stream into `YAMLNode`s, one at a time.
package final class YAMLParser {
    private var parser = yaml_parser_t()
    /// The input, owned and unmoved while libyaml reads it in place.
    private let bytes: UnsafeMutableBufferPointer<UInt8>
    private var anchors: [String: YAMLNode] = [:]

    package init(yaml: String) throws(YAMLError) {
        bytes = .allocate(capacity: max(yaml.utf8.count, 1))
        _ = bytes.initialize(from: yaml.utf8)
        yaml_parser_initialize(&parser)
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        yaml_parser_set_input_string(&parser, bytes.baseAddress, yaml.utf8.count)
        var start = try parse()  // STREAM-START
        yaml_event_delete(&start)
    }

    deinit {
        yaml_parser_delete(&parser)
        bytes.deallocate()
    }

    /// The whole stream as one document (nil when empty); a second document is an error.
    package static func compose(yaml: String) throws(YAMLError) -> YAMLNode? {
        try YAMLParser(yaml: yaml).singleRoot()
    }

    /// The next document's root, or nil at the end of the stream.
    package func nextRoot() throws(YAMLError) -> YAMLNode? {
        guard parser.stream_end_produced == 0 else { return nil }
        var event = try parse()
        defer { yaml_event_delete(&event) }
        guard event.type != YAML_STREAM_END_EVENT else { return nil }
        return try loadDocument()
    }

    func singleRoot() throws(YAMLError) -> YAMLNode? {
        guard let root = try nextRoot() else { return nil }
        var event = try parse()
        defer { yaml_event_delete(&event) }
        if event.type != YAML_STREAM_END_EVENT {
            throw YAMLError(kind: .composer, problem: "but found another document", mark: Self.mark(event.start_mark),
                            context: ("expected a single document in the stream", YAMLMark(line: 1, column: 1)))
        }
        return root
    }

    // MARK: Events

    /// The next event; the caller deletes it.
    private func parse() throws(YAMLError) -> yaml_event_t {
        var event = yaml_event_t()
        guard yaml_parser_parse(&parser, &event) == 1 else { throw currentError() }
        return event
    }

    private func loadDocument() throws(YAMLError) -> YAMLNode {
        anchors = [:]
        var first = try parse()
        defer { yaml_event_delete(&first) }
        let root = try loadNode(first)
        var end = try parse()  // DOCUMENT-END
        yaml_event_delete(&end)
        return root
    }

    private func loadNode(_ event: yaml_event_t) throws(YAMLError) -> YAMLNode {
        switch event.type {
        case YAML_ALIAS_EVENT:
            let name = Self.string(event.data.alias.anchor) ?? ""
            guard let node = anchors[name] else {
                throw YAMLError(kind: .composer, problem: "found undefined alias", mark: Self.mark(event.start_mark))
            }
            return node
        case YAML_SCALAR_EVENT:
            let data = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
            let tag: YAMLTag
            if data.quoted_implicit == 1 {
                tag = .str
            } else {
                tag = Self.tag(Self.string(data.tag), implicit: YAMLTag.resolve(text), nonSpecific: .str)
            }
            let style = YAMLNode.Scalar.Style(rawValue: Int32(data.style.rawValue)) ?? .any
            let node = YAMLNode.scalar(.init(string: text, tag: tag, style: style, mark: Self.mark(event.start_mark)))
            register(data.anchor, node)
            return node
        case YAML_SEQUENCE_START_EVENT:
            let start = event.data.sequence_start
            var nodes: [YAMLNode] = []
            while true {
                var next = try parse()
                defer { yaml_event_delete(&next) }
                if next.type == YAML_SEQUENCE_END_EVENT { break }
                nodes.append(try loadNode(next))
            }
            let tag = Self.tag(start.implicit != 0 ? nil : Self.string(start.tag), implicit: .seq, nonSpecific: .seq)
            let node = YAMLNode.sequence(.init(nodes: nodes, tag: tag, mark: Self.mark(event.start_mark)))
            register(start.anchor, node)
            return node
        case YAML_MAPPING_START_EVENT:
            let start = event.data.mapping_start
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            while true {
                var keyEvent = try parse()
                defer { yaml_event_delete(&keyEvent) }
                if keyEvent.type == YAML_MAPPING_END_EVENT { break }
                let key = try loadNode(keyEvent)
                var valueEvent = try parse()
                defer { yaml_event_delete(&valueEvent) }
                pairs.append((key, try loadNode(valueEvent)))
            }
            try Self.checkDuplicates(pairs)
            let tag = Self.tag(start.implicit != 0 ? nil : Self.string(start.tag), implicit: .map, nonSpecific: .map)
            let node = YAMLNode.mapping(.init(pairs: pairs, tag: tag, mark: Self.mark(event.start_mark)))
            register(start.anchor, node)
            return node
        default:
            throw YAMLError(kind: .composer, problem: "unexpected event", mark: Self.mark(event.start_mark))
        }
    }

    private func register(_ anchor: UnsafeMutablePointer<yaml_char_t>?, _ node: YAMLNode) {
        if let name = Self.string(anchor) { anchors[name] = node }
    }

    /// Scalar keys equal in text and resolved tag (`1` and `"1"` differ) may occur once.
    private static func checkDuplicates(_ pairs: [(key: YAMLNode, value: YAMLNode)]) throws(YAMLError) {
        guard pairs.count > 1 else { return }
        struct Key: Hashable { var string: String; var tag: YAMLTag }
        var seen: [Key: (scalar: YAMLNode.Scalar, count: Int)] = [:]
        for pair in pairs {
            guard case .scalar(let scalar) = pair.key else { continue }
            seen[Key(string: scalar.string, tag: scalar.tag), default: (scalar, 0)].count += 1
        }
        let duplicates = seen.values.filter { $0.count > 1 }.map(\.scalar).sorted { $0.string < $1.string }
        guard let first = duplicates.first else { return }
        throw YAMLError(kind: .duplicateKeys(duplicates.map(\.string)), problem: "duplicate keys",
                        mark: first.mark ?? YAMLMark(line: 0, column: 0))
    }

    private func currentError() -> YAMLError {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
        let context = parser.context.map { (String(cString: $0), Self.mark(parser.context_mark)) }
        switch parser.error {
        case YAML_MEMORY_ERROR: return YAMLError(kind: .memory, problem: "Memory error")
        case YAML_READER_ERROR: return YAMLError(kind: .reader, problem: problem)
        case YAML_SCANNER_ERROR:
            return YAMLError(kind: .scanner, problem: problem, mark: Self.mark(parser.problem_mark), context: context)
        case YAML_PARSER_ERROR:
            return YAMLError(kind: .parser, problem: problem, mark: Self.mark(parser.problem_mark), context: context)
        default:
            return YAMLError(kind: .composer, problem: problem, mark: Self.mark(parser.problem_mark), context: context)
        }
    }

    // MARK: Conversions

    private static func mark(_ mark: yaml_mark_t) -> YAMLMark {
        YAMLMark(line: mark.line + 1, column: mark.column + 1)
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    /// No tag: `implicit`; the non-specific `!`: `nonSpecific`; else the tag as libyaml expands it.
    private static func tag(_ name: String?, implicit: @autoclosure () -> YAMLTag, nonSpecific: YAMLTag) -> YAMLTag {
        guard let name, !name.isEmpty else { return implicit() }
        return name == "!" ? nonSpecific : YAMLTag(rawValue: name)
    }
}
