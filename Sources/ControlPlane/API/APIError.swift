import SidecarCore

/// An API failure as the client sees it: a status and a one-line message, sent as
/// `{"error": "..."}` (plus `issues` for validation errors). The one place errors become
/// statuses: the router's own, the server's (413, 408, 503) and `ControlPlaneError`'s.
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

    /// The status and message for each of the control plane's refusals: the one mapping.
    public init(_ error: ControlPlaneError) {
        switch error {
        case .invalid(let message): self.init(400, message)
        case .invalidResources(let error): self.init(error)
        case .notFound(let message): self.init(404, message)
        case .unauthenticated(let message): self.init(401, message)
        case .forbidden(let message): self.init(403, message)
        case .store(let error): self.init(error)
        case .certificate(let error): self.init(error)
        }
    }

    /// YAML syntax errors are 400; well-formed input that fails validation is 422.
    private init(_ error: ConfigError) {
        let syntax = error.issues.contains { $0.path.isEmpty && $0.message.hasPrefix("invalid YAML") }
        let lines = error.issues.map(\.description)
        self.init(syntax ? 400 : 422, lines.count == 1 ? lines[0] : "\(lines.count) problems: " + lines.joined(separator: "; "),
                  issues: lines)
    }

    private init(_ error: StoreError) {
        switch error {
        case .conflict(let message): self.init(409, message)
        case .notFound(let message): self.init(404, message)
        case .storage: self.init(500, ControlPlaneError.store(error).description)
        case .unavailable: self.init(503, ControlPlaneError.store(error).description)
        }
    }

    private init(_ error: CertificateAuthorityError) {
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
