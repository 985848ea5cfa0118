/// A `GatewayRoute`: how the gateway maps external requests (by `Host` and path) to mesh
/// services, with the edge concerns of each rule (path rewrite, authentication, rate limit,
/// CORS, body size). Only a sidecar with `gateway:` uses it; first matching rule wins.
///
/// Immutable once decoded; host names are lower-case and carry no port.
public struct GatewayRoute: Sendable, Equatable {
    public var name: String
    public var resourceVersion: String?
    /// Lower-case DNS names (`api.example.com`, or `*.example.com` for one label); empty: any host.
    public var hosts: [String]
    public var rules: [GatewayRule]

    public init(name: String, resourceVersion: String? = nil, hosts: [String] = [], rules: [GatewayRule]) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.hosts = hosts
        self.rules = rules
    }

    /// Whether a request's `Host` (lower-cased, port removed) is one of `hosts`.
    public func matches(host: Substring) -> Bool {
        guard !hosts.isEmpty else { return true }
        return hosts.contains { pattern in
            if pattern.hasPrefix("*.") {
                let suffix = pattern.dropFirst(1)
                return host.hasSuffix(suffix) && !host.dropLast(suffix.count).contains(".") && host.count > suffix.count
            }
            return host == pattern[...]
        }
    }
}

/// One rule of a `GatewayRoute`: which requests (path, method, headers) go to which service,
/// and what the edge does to them first.
public struct GatewayRule: Sendable, Equatable {
    public var match: RouteMatch
    /// The mesh service the request goes to (its own Route, TrafficPolicy apply as for any caller);
    /// empty on an `aggregate` rule.
    public var service: String
    /// Replaces the matched `pathPrefix` (whole segments) with this prefix going upstream.
    public var rewritePathPrefix: String?
    /// An `AuthenticationPolicy` name; nil: no authentication.
    public var auth: String?
    public var rateLimit: GatewayRateLimit?
    public var cors: CORSPolicy?
    /// Larger request bodies get 413 `bad-request` (declared length at once, chunked as it passes).
    public var maxBodyBytes: Int?
    /// Responses to GET/HEAD kept and answered at the edge (`GatewayResponseCaches`).
    public var cache: GatewayCachePolicy?
    /// Instead of `service`: the request fans out to these calls and their JSON is merged.
    public var aggregate: GatewayAggregate?

    public init(
        match: RouteMatch = RouteMatch(), service: String, rewritePathPrefix: String? = nil, auth: String? = nil,
        rateLimit: GatewayRateLimit? = nil, cors: CORSPolicy? = nil, maxBodyBytes: Int? = nil,
        cache: GatewayCachePolicy? = nil, aggregate: GatewayAggregate? = nil
    ) {
        self.match = match
        self.service = service
        self.rewritePathPrefix = rewritePathPrefix
        self.auth = auth
        self.rateLimit = rateLimit
        self.cors = cors
        self.maxBodyBytes = maxBodyBytes
        self.cache = cache
        self.aggregate = aggregate
    }

    /// The mesh services the rule calls: its `service`, or its aggregate's.
    public var services: [String] { aggregate.map { $0.calls.map(\.service) } ?? [service] }
}

/// An aggregate rule: one request fans out to `calls` in parallel, each a GET through the mesh
/// to its service and path; the JSON answers are merged under their keys. `timeout` bounds the
/// whole (and each call).
public struct GatewayAggregate: Sendable, Equatable {
    public struct Call: Sendable, Equatable {
        public var key: String
        public var service: String
        /// An origin-form path (and query) sent to the service.
        public var path: String

        public init(key: String, service: String, path: String) {
            self.key = key
            self.service = service
            self.path = path
        }
    }

    public var timeout: MeshDuration
    public var calls: [Call]

    public init(timeout: MeshDuration, calls: [Call]) {
        self.timeout = timeout
        self.calls = calls
    }
}

/// A gateway rule's response cache: how long a response stays fresh when it says nothing
/// itself (`ttl`, also the most any `max-age` gets), how many bytes the rule's entries may take
/// in the process (`maxBytes`, least recently used evicted first), and whether authenticated
/// requests (`Authorization`, or a user the rule's `auth` verified) may be answered from and
/// fill the cache (`allowAuthorization`: the entries are then shared by every caller that
/// passes the rule's `auth`).
public struct GatewayCachePolicy: Sendable, Equatable {
    public var ttl: MeshDuration
    public var maxBytes: Int
    public var allowAuthorization: Bool

    public init(ttl: MeshDuration, maxBytes: Int, allowAuthorization: Bool = false) {
        self.ttl = ttl
        self.maxBytes = maxBytes
        self.allowAuthorization = allowAuthorization
    }
}

/// A gateway rule's rate limit: one token bucket per key (client IP, API key name or JWT
/// subject), each `requestsPerSecond` with `burst`.
public struct GatewayRateLimit: Sendable, Equatable {
    public enum Key: String, Sendable, CaseIterable {
        case clientIP = "client-ip"
        case apiKey = "api-key"
        case subject
    }

    public var limit: RateLimit
    public var key: Key

    public init(limit: RateLimit, key: Key = .clientIP) {
        self.limit = limit
        self.key = key
    }
}

/// Cross-origin access for browsers: a preflight (`OPTIONS` with `Access-Control-Request-Method`)
/// is answered at the edge; other responses to an allowed `Origin` get `Access-Control-Allow-Origin`.
public struct CORSPolicy: Sendable, Equatable {
    /// Exact origins (`https://app.example.com`), or `*`.
    public var allowOrigins: [String]
    public var allowMethods: [String]
    /// Lower-case header names a preflight may ask for; empty allows what it asks.
    public var allowHeaders: [String]
    public var maxAge: MeshDuration?

    public init(allowOrigins: [String], allowMethods: [String] = ["GET", "HEAD", "POST"], allowHeaders: [String] = [],
                maxAge: MeshDuration? = nil) {
        self.allowOrigins = allowOrigins
        self.allowMethods = allowMethods
        self.allowHeaders = allowHeaders
        self.maxAge = maxAge
    }

    /// The value of `Access-Control-Allow-Origin` for `origin`, nil when not allowed.
    public func allowedOrigin(_ origin: String) -> String? {
        if allowOrigins.contains("*") { return "*" }
        return allowOrigins.contains(origin) ? origin : nil
    }
}
