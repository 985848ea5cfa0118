/// One rule of a `Route`: a match and what to do with the requests it matches (which subsets,
/// timeout, retries, header rewrites, faults, mirroring, rate limit), plus the small value
/// types only a rule uses.
public struct RouteRule: Sendable, Equatable {
    /// The fields, immutable, behind one reference: every request that matches the rule holds
    /// it (the exchange, the filters), and a copy costs one retain instead of one per field.
    /// A setter (config decoding only) stores a changed copy.
    private struct Fields: Sendable, Equatable {
        var match: RouteMatch
        var backends: [WeightedBackend]
        var timeout: MeshDuration
        var retries: RetryPolicy
        var requestHeaders: HeaderRewrite
        var responseHeaders: HeaderRewrite
        var fault: FaultInjection?
        var mirror: TrafficMirror?
        var rateLimit: RateLimit?
    }

    private final class Storage: Sendable {
        let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var storage: Storage

    private mutating func update(_ change: (inout Fields) -> Void) {
        var fields = storage.fields
        change(&fields)
        storage = Storage(fields)
    }

    public var match: RouteMatch {
        get { storage.fields.match }
        set { update { $0.match = newValue } }
    }
    /// Never empty; weights sum to more than 0.
    public var backends: [WeightedBackend] {
        get { storage.fields.backends }
        set { update { $0.backends = newValue } }
    }
    public var timeout: MeshDuration {
        get { storage.fields.timeout }
        set { update { $0.timeout = newValue } }
    }
    public var retries: RetryPolicy {
        get { storage.fields.retries }
        set { update { $0.retries = newValue } }
    }
    public var requestHeaders: HeaderRewrite {
        get { storage.fields.requestHeaders }
        set { update { $0.requestHeaders = newValue } }
    }
    public var responseHeaders: HeaderRewrite {
        get { storage.fields.responseHeaders }
        set { update { $0.responseHeaders = newValue } }
    }
    public var fault: FaultInjection? {
        get { storage.fields.fault }
        set { update { $0.fault = newValue } }
    }
    public var mirror: TrafficMirror? {
        get { storage.fields.mirror }
        set { update { $0.mirror = newValue } }
    }
    /// Enforced on the caller's outbound for this rule.
    public var rateLimit: RateLimit? {
        get { storage.fields.rateLimit }
        set { update { $0.rateLimit = newValue } }
    }

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
        storage = Storage(Fields(
            match: match, backends: backends, timeout: timeout, retries: retries, requestHeaders: requestHeaders,
            responseHeaders: responseHeaders, fault: fault, mirror: mirror, rateLimit: rateLimit))
    }

    public static func == (lhs: RouteRule, rhs: RouteRule) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.fields == rhs.storage.fields
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
