/// One rule of a `Route`: a match and what to do with the requests it matches (which subsets,
/// timeout, retries, header rewrites, faults, mirroring, rate limit), plus the small value
/// types only a rule uses.
public struct RouteRule: Sendable, Equatable {
    public var match: RouteMatch
    /// Never empty; weights sum to more than 0.
    public var backends: [WeightedBackend]
    public var timeout: MeshDuration
    public var retries: RetryPolicy
    public var requestHeaders: HeaderRewrite
    public var responseHeaders: HeaderRewrite
    public var fault: FaultInjection?
    public var mirror: TrafficMirror?
    /// Enforced on the caller's outbound for this rule.
    public var rateLimit: RateLimit?

    public init(
        match: RouteMatch = RouteMatch(),
        backends: [WeightedBackend] = MeshDefaults.backends,
        timeout: MeshDuration = MeshDefaults.requestTimeout,
        retries: RetryPolicy = .default,
        requestHeaders: HeaderRewrite = HeaderRewrite(),
        responseHeaders: HeaderRewrite = HeaderRewrite(),
        fault: FaultInjection? = nil,
        mirror: TrafficMirror? = nil,
        rateLimit: RateLimit? = nil
    ) {
        self.match = match
        self.backends = backends
        self.timeout = timeout
        self.retries = retries
        self.requestHeaders = requestHeaders
        self.responseHeaders = responseHeaders
        self.fault = fault
        self.mirror = mirror
        self.rateLimit = rateLimit
    }
}

/// Which requests a rule takes: path (prefix or exact), optionally method and header values.
public struct RouteMatch: Sendable, Equatable {
    public enum Path: Sendable, Equatable {
        case prefix(String)
        case exact(String)
    }

    /// Default: prefix `/` (everything).
    public var path: Path
    /// Upper-case HTTP method, nil for any.
    public var method: String?
    /// Lower-cased header names to exact values; all must match.
    public var headers: [String: String]

    public init(path: Path = .prefix("/"), method: String? = nil, headers: [String: String] = [:]) {
        self.path = path
        self.method = method
        self.headers = headers
    }
}

/// A share of a rule's traffic sent to the instances whose labels include `subset`.
public struct WeightedBackend: Sendable, Equatable {
    /// Labels an instance must carry; empty selects every instance of the service.
    public var subset: [String: String]
    /// Relative weight, 0 or more (0 drains a subset).
    public var weight: Int

    public init(subset: [String: String], weight: Int) {
        self.subset = subset
        self.weight = weight
    }
}

/// Headers to set (replace) and remove on a request or response.
public struct HeaderRewrite: Sendable, Equatable {
    /// Lower-cased names.
    public var `set`: [String: String]
    /// Lower-cased names.
    public var remove: [String]

    public init(set: [String: String] = [:], remove: [String] = []) {
        self.set = set
        self.remove = remove
    }

    public var isEmpty: Bool { self.set.isEmpty && remove.isEmpty }
}

/// Copy a share of a rule's traffic to a subset, fire-and-forget; responses are dropped.
public struct TrafficMirror: Sendable, Equatable {
    public var subset: [String: String]
    /// 0–100, default 100.
    public var percent: Double

    public init(subset: [String: String], percent: Double = MeshDefaults.mirrorPercent) {
        self.subset = subset
        self.percent = percent
    }
}
