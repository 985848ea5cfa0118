/// One problem found in a configuration document: where it is (file, line, column, key path)
/// and what is wrong, in words an operator can act on.
///
/// `path` is the key path inside the document (`resources[1].rules[0].timeout`), empty for
/// problems of the document as a whole (YAML syntax). Lines and columns count from 1.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public var file: String?
    public var line: Int?
    public var column: Int?
    public var path: String
    public var message: String

    public init(file: String? = nil, line: Int? = nil, column: Int? = nil, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    /// `web.yaml:14: resources[1].rules[0].timeout: "2x" is not a duration (use 250ms, 2s, 1m)`
    public var description: String {
        var location = ""
        switch (file, line) {
        case let (file?, line?): location = "\(file):\(line): "
        case let (file?, nil): location = "\(file): "
        case let (nil, line?): location = "line \(line): "
        case (nil, nil): break
        }
        let subject = path.isEmpty ? "" : "\(path): "
        return location + subject + message
    }
}
