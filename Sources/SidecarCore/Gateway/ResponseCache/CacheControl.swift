/// The `Cache-Control` directives a shared cache acts on (RFC 9111 §5.2), read from one or
/// more field values: a response's, or a request's (`min-fresh`, `max-stale`,
/// `only-if-cached` are request directives, `must-revalidate` / `proxy-revalidate` response
/// ones). Unknown directives are ignored; a qualified `no-cache="f"` or `private="f"` counts as
/// the unqualified one (the cache stores less, never more).
///
/// Invalid arguments (RFC 9111 §1.2.2: delta-seconds are digits only): a `max-age` or
/// `s-maxage` that is not delta-seconds counts as 0, so the response or the request's limit is
/// stale at once (§4.2.1 advises treating invalid freshness as stale); a `min-fresh` or
/// `max-stale` with an invalid argument is ignored (a directive the cache does not understand,
/// §5.2), so it neither asks for more freshness nor allows staleness. Values past 2^31 - 1
/// saturate (§1.2.2).
struct CacheControl: Equatable, Sendable {
    var noStore = false
    var noCache = false
    var isPrivate = false
    var maxAge: Int64?
    var sharedMaxAge: Int64?
    /// Response: `must-revalidate` or `proxy-revalidate` (both bind a shared cache): never
    /// used stale, whatever a request's `max-stale` allows (RFC 9111 §5.2.2.2, §5.2.2.8).
    var mustRevalidate = false
    /// Request: the answer must stay fresh this many more seconds (RFC 9111 §5.2.1.3).
    var minFresh: Int64?
    /// Request: a stale answer is acceptable this many seconds past its freshness
    /// (`Int64.max`: `max-stale` without a value, any staleness; RFC 9111 §5.2.1.2).
    var maxStale: Int64?
    /// Request: answer from a stored response or 504, never from the upstream (RFC 9111 §5.2.1.7).
    var onlyIfCached = false

    init() {}

    init<Values: Sequence<String>>(_ values: Values) {
        for value in values {
            for item in value.split(separator: ",") {
                let directive = item.trimmingSpaces
                let parts = directive.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let rawName = parts.first else { continue }
                let name = rawName.trimmingSpaces.lowercased()
                let argument = parts.count > 1 ? Self.unquoted(parts[1].trimmingSpaces) : nil
                switch name {
                case "no-store": noStore = true
                case "no-cache": noCache = true
                case "private": isPrivate = true
                case "must-revalidate", "proxy-revalidate": mustRevalidate = true
                case "only-if-cached": onlyIfCached = true
                // A malformed age is treated as 0 (stale), as RFC 9111 §4.2.1 advises.
                case "max-age": maxAge = argument.map { Self.seconds($0) } ?? 0
                case "s-maxage": sharedMaxAge = argument.map { Self.seconds($0) } ?? 0
                case "min-fresh":
                    if let seconds = argument.flatMap(Self.deltaSeconds) { minFresh = seconds }
                case "max-stale":
                    if let argument {
                        if let seconds = Self.deltaSeconds(argument) { maxStale = seconds }
                    } else {
                        maxStale = .max
                    }
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
    /// Anything else is 0.
    static func seconds(_ text: Substring) -> Int64 {
        deltaSeconds(text) ?? 0
    }

    /// Delta-seconds (RFC 9111 §1.2.2), nil when `text` is not one (empty, a sign, not digits).
    static func deltaSeconds(_ text: Substring) -> Int64? {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int64(text.prefix(10)).map { min($0, Int64(Int32.max)) } ?? 0
    }
}
