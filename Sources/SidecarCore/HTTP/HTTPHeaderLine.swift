/// One header the proxy adds to a forwarded head (`x-request-id`, `traceparent`, `x-mesh-caller`),
/// validated once so that no injected value can split the head (no CR, LF or other controls).
public struct HTTPHeaderLine: Sendable, Hashable {
    public let name: String
    public let value: String

    /// Throws `.invalidHeaderName(line: 0)` / `.invalidHeaderValue(line: 0)` for bytes that do
    /// not belong in a field line (line 0 meaning "added by us").
    public init(name: String, value: String) throws(HTTPParserError) {
        guard !name.utf8.isEmpty, name.utf8.allSatisfy(HTTPGrammar.isTokenByte) else {
            throw .invalidHeaderName(line: 0)
        }
        guard value.utf8.allSatisfy(HTTPGrammar.isFieldValueByte),
            value.utf8.first.map(HTTPGrammar.isWhitespace) != true,
            value.utf8.last.map(HTTPGrammar.isWhitespace) != true
        else {
            throw .invalidHeaderValue(line: 0)
        }
        self.name = name
        self.value = value
    }

    /// The bytes this line takes on the wire, CRLF included.
    var wireLength: Int { name.utf8.count + 2 + value.utf8.count + 2 }
}
