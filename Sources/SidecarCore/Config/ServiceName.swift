/// The rule every service name follows, wherever one comes in (resources, join tokens):
/// service names end up in SPIFFE IDs, `Host` headers and metric labels, so they stay DNS-like.
public enum ServiceName {
    public static let rule = "lowercase letters, digits, \"-\" and \".\", starting and ending with a letter or digit, at most 253 characters"

    public static func isValid(_ text: String) -> Bool {
        guard (1...253).contains(text.utf8.count), let first = text.first, let last = text.last else { return false }
        let allowed = text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "." }
        return allowed && first.isASCII && (first.isLowercase || first.isNumber)
            && (last.isLowercase || last.isNumber)
    }
}
