/// A `Route` resource: the ordered rules that decide, for one destination service, which
/// subset gets a request and under which timeout, retry, rewrite and fault settings.
///
/// First matching rule wins; a request no rule matches is answered `404 no-route`. `name`
/// defaults to `service` (one Route per service). Every field of a rule holds its resolved
/// value: defaults are filled in at decode time, so the data plane never guesses.
public struct Route: Sendable, Equatable {
    public var name: String
    public var resourceVersion: String?
    public var service: String
    public var rules: [RouteRule]

    public init(name: String? = nil, resourceVersion: String? = nil, service: String, rules: [RouteRule]) {
        self.name = name ?? service
        self.resourceVersion = resourceVersion
        self.service = service
        self.rules = rules
    }
}
