/// Every problem found while loading one configuration input, reported together so an
/// operator fixes them in one pass instead of one per run.
///
/// Invariant: `issues` is never empty when thrown; issues keep document order.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var issues: [ConfigIssue]

    public init(issues: [ConfigIssue]) {
        self.issues = issues
    }

    public init(_ issue: ConfigIssue) {
        self.issues = [issue]
    }

    /// One issue per line, in document order.
    public var description: String {
        issues.map(\.description).joined(separator: "\n")
    }
}
