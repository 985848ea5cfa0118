import SidecarCore

/// An API failure as the client sees it: a status and a one-line message, sent as
/// `{"error": "..."}` (plus `issues` for validation errors). The one place errors become statuses.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    /// Validation issues, one line each (document, field, line).
    public var issues: [String]

    public init(_ status: Int, _ message: String, issues: [String] = []) {
        self.status = status
        self.message = message
        self.issues = issues
    }

    public var description: String { message }

    public static func badRequest(_ message: String) -> APIError { APIError(400, message) }
    public static func unauthorized(_ message: String = "missing or invalid bearer token") -> APIError { APIError(401, message) }
    public static func forbidden(_ message: String) -> APIError { APIError(403, message) }
    public static func notFound(_ message: String) -> APIError { APIError(404, message) }

    /// YAML syntax errors are 400; well-formed input that fails validation is 422.
    public init(_ error: ConfigError) {
        let syntax = error.issues.contains { $0.path.isEmpty && $0.message.hasPrefix("invalid YAML") }
        let lines = error.issues.map(\.description)
        self.init(syntax ? 400 : 422, lines.count == 1 ? lines[0] : "\(lines.count) problems: " + lines.joined(separator: "; "),
                  issues: lines)
    }

    public init(_ error: StoreError) {
        switch error {
        case .conflict(let message): self.init(409, message)
        case .notFound(let message): self.init(404, message)
        case .storage(let message): self.init(500, "store failed: \(message)")
        }
    }

    public init(_ error: CertificateAuthorityError) {
        switch error {
        case .invalidRequest(let message): self.init(400, message)
        case .forbidden(let message): self.init(403, message)
        }
    }

    public var json: String {
        var body = "{\"error\":\(ConfigValue.quoted(message))"
        if !issues.isEmpty { body += ",\"issues\":[" + issues.map(ConfigValue.quoted).joined(separator: ",") + "]" }
        return body + "}\n"
    }
}
