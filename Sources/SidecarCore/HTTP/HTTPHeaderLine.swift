/// One header the proxy adds to a forwarded head (`x-request-id`, `traceparent`, `x-mesh-caller`),
/// validated once so that no injected value can split the head (no CR, LF or other controls).
public struct HTTPHeaderLine: Sendable, Hashable {
    public let name: String
    public let value: String

    /// Throws `.invalidHeaderName(line: 0)` / `.invalidHeaderValue(line: 0)` for bytes that do
    /// not belong in a field line (line 0 meaning "added by us").
    public init(name: String, value: String) throws(HTTPParserError) {
        guard !name.utf8.isEmpty, Self.all(name, HTTPGrammar.isTokenByte) else {
            throw .invalidHeaderName(line: 0)
        }
        guard Self.all(value, HTTPGrammar.isFieldValueByte),
            value.utf8.first.map(HTTPGrammar.isWhitespace) != true,
            value.utf8.last.map(HTTPGrammar.isWhitespace) != true
        else {
            throw .invalidHeaderValue(line: 0)
        }
        self.name = name
        self.value = value
    }

    /// A line the sidecar generated from bytes it knows are valid (its own request and span
    /// ids, a hop count): validated only in debug builds, since several are added per request.
    init(generatedName name: String, value: String) {
        assert((try? HTTPHeaderLine(name: name, value: value)) != nil, "invalid generated header \(name): \(value)")
        self.name = name
        self.value = value
    }

    /// Over the string's contiguous UTF-8 (a tight loop; several lines are added per request).
    private static func all(_ text: String, _ isValid: (UInt8) -> Bool) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { $0.allSatisfy(isValid) } ?? text.utf8.allSatisfy(isValid)
    }

    /// The bytes this line takes on the wire, CRLF included.
    var wireLength: Int { name.utf8.count + 2 + value.utf8.count + 2 }
}
