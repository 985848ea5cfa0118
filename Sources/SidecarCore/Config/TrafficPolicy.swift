/// A `TrafficPolicy` resource: how callers treat one destination service's endpoints
/// (balancing, circuit breaking, outlier ejection, retry budget, connect timeout), its
/// inbound rate limit, and the fallback answer served while it is unavailable.
///
/// `name` defaults to `service` (one per service). Services without a policy use
/// `TrafficPolicy.default(service:)`, built from `MeshDefaults`.
public struct TrafficPolicy: Sendable, Equatable {
    public var name: String
    public var resourceVersion: String?
    public var service: String
    public var loadBalancer: LoadBalancerKind
    public var circuitBreaker: CircuitBreakerThresholds
    public var outlierDetection: OutlierDetection
    public var retryBudget: RetryBudget
    /// Enforced by each destination sidecar on inbound.
    public var rateLimit: RateLimit?
    public var connectTimeout: MeshDuration
    /// Served instead of `circuit-open` / `no-healthy-endpoint` errors, when set.
    public var fallback: FallbackResponse?

    public init(
        name: String? = nil,
        resourceVersion: String? = nil,
        service: String,
        loadBalancer: LoadBalancerKind = MeshDefaults.loadBalancer,
        circuitBreaker: CircuitBreakerThresholds = MeshDefaults.circuitBreaker,
        outlierDetection: OutlierDetection = MeshDefaults.outlierDetection,
        retryBudget: RetryBudget = MeshDefaults.retryBudget,
        rateLimit: RateLimit? = nil,
        connectTimeout: MeshDuration = MeshDefaults.connectTimeout,
        fallback: FallbackResponse? = nil
    ) {
        self.name = name ?? service
        self.resourceVersion = resourceVersion
        self.service = service
        self.loadBalancer = loadBalancer
        self.circuitBreaker = circuitBreaker
        self.outlierDetection = outlierDetection
        self.retryBudget = retryBudget
        self.rateLimit = rateLimit
        self.connectTimeout = connectTimeout
        self.fallback = fallback
    }

    /// The policy of a service nobody wrote one for: least-request, connect timeout 5s,
    /// breaker 1024/1024/1024/3, outlier 5/5/10s/30s/10%, retry budget 20% + 10/s.
    public static func `default`(service: String) -> TrafficPolicy {
        TrafficPolicy(service: service)
    }
}

public enum LoadBalancerKind: String, Sendable, Equatable, CaseIterable {
    /// Power of two choices on outstanding requests.
    case leastRequest
    case roundRobin
    /// Power of two choices on peak-EWMA latency × (outstanding requests + 1), as Linkerd.
    case ewma
}

/// Per-destination limits; overflowing one answers `503 circuit-open`.
public struct CircuitBreakerThresholds: Sendable, Equatable {
    public var maxConnections: Int
    public var maxPendingRequests: Int
    public var maxRequests: Int
    public var maxRetries: Int

    public init(maxConnections: Int, maxPendingRequests: Int, maxRequests: Int, maxRetries: Int) {
        self.maxConnections = maxConnections
        self.maxPendingRequests = maxPendingRequests
        self.maxRequests = maxRequests
        self.maxRetries = maxRetries
    }
}

/// When to eject a misbehaving endpoint from balancing, and for how long.
public struct OutlierDetection: Sendable, Equatable {
    public var consecutive5xx: Int
    public var consecutiveGatewayErrors: Int
    public var interval: MeshDuration
    public var baseEjectionTime: MeshDuration
    /// 0–100: the most of a service's endpoints ejected at once.
    public var maxEjectionPercent: Double

    public init(
        consecutive5xx: Int, consecutiveGatewayErrors: Int, interval: MeshDuration,
        baseEjectionTime: MeshDuration, maxEjectionPercent: Double
    ) {
        self.consecutive5xx = consecutive5xx
        self.consecutiveGatewayErrors = consecutiveGatewayErrors
        self.interval = interval
        self.baseEjectionTime = baseEjectionTime
        self.maxEjectionPercent = maxEjectionPercent
    }
}

/// Retries within the last 10s may be at most `percent` of requests plus `minPerSecond`.
public struct RetryBudget: Sendable, Equatable {
    /// 0–100.
    public var percent: Double
    public var minPerSecond: Int

    public init(percent: Double, minPerSecond: Int) {
        self.percent = percent
        self.minPerSecond = minPerSecond
    }
}

/// A canned answer served while the breaker is open or no endpoint is healthy.
public struct FallbackResponse: Sendable, Equatable {
    /// 100–599.
    public var status: Int
    /// Lower-cased names.
    public var headers: [String: String]
    public var body: String

    public init(status: Int, headers: [String: String] = [:], body: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
    }
}
