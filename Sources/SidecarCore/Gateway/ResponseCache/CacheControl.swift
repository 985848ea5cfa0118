/// The `Cache-Control` directives a shared cache acts on (RFC 9111 §5.2), read from one or
/// more field values. Unknown directives are ignored; a qualified `no-cache="f"` or
/// `private="f"` counts as the unqualified one (the cache stores less, never more).
struct CacheControl: Equatable, Sendable {
    var noStore = false
    var noCache = false
    var isPrivate = false
    var maxAge: Int64?
    var sharedMaxAge: Int64?

    init() {}

    init<Values: Sequence<String>>(_ values: Values) {
        for value in values {
            for item in value.split(separator: ",") {
                let directive = item.trimmingSpaces
                let parts = directive.split(separator: "=", maxSplits: 1)
                guard let rawName = parts.first else { continue }
                let name = rawName.trimmingSpaces.lowercased()
                let argument = parts.count > 1 ? Self.unquoted(parts[1].trimmingSpaces) : nil
                switch name {
                case "no-store": noStore = true
                case "no-cache": noCache = true
                case "private": isPrivate = true
                // A malformed age is treated as 0 (stale), as RFC 9111 §4.2.1 advises.
                case "max-age": maxAge = argument.map { Self.seconds($0) } ?? 0
                case "s-maxage": sharedMaxAge = argument.map { Self.seconds($0) } ?? 0
                default: continue
                }
            }
        }
    }

    /// A request's directives: its `Cache-Control`, or, when it sends none, `Pragma: no-cache`
    /// as `no-cache` (RFC 9111 §5.4, HTTP/1.0 clients' way to ask for a validated answer).
    static func request(cacheControl: [String], pragma: [String]) -> CacheControl {
        var directives = CacheControl(cacheControl)
        if cacheControl.isEmpty {
            directives.noCache = pragma.contains { $0.split(separator: ",").contains { $0.trimmingSpaces.lowercased() == "no-cache" } }
        }
        return directives
    }

    private static func unquoted(_ text: Substring) -> Substring {
        guard text.count >= 2, text.first == "\"", text.last == "\"" else { return text }
        return text.dropFirst().dropLast()
    }

    /// Delta-seconds: digits only; too large saturates (about 68 years, RFC 9111 §1.2.2).
    static func seconds(_ text: Substring) -> Int64 {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return 0 }
        return Int64(text.prefix(10)).map { min($0, Int64(Int32.max)) } ?? 0
    }
}
