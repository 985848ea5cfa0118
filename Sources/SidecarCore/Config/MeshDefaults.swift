/// Every default of the mesh config model in one place, as DESIGN.md states them; the model
/// types and the decoder read them from here, never from literals of their own.
public enum MeshDefaults {
    // Sidecar bootstrap.
    public static let trustDomain = "mesh.local"
    public static let inboundListen = HostPort(host: "0.0.0.0", port: 15006)
    public static let outboundListen = HostPort(host: "127.0.0.1", port: 15001)
    public static let adminListen = HostPort(host: "127.0.0.1", port: 15000)
    /// Dynamic mode's saved state (`controlPlane.stateDir`), relative to the config file.
    public static let stateDirectory = "sidecar-state"

    // Route rules.
    /// The request timeout of a rule without `timeout`, and of traffic with no Route at all.
    public static let requestTimeout = MeshDuration.seconds(15)
    public static let retryAttempts = 2
    public static let retryOn: [RetryCondition] = [.connectFailure, .reset, .status(503)]
    public static let backoff = RetryBackoff(base: .milliseconds(25), max: .milliseconds(250))
    /// A rule without `backends` sends everything to all instances of the service.
    public static let backends = [WeightedBackend(subset: [:], weight: 100)]
    public static let mirrorPercent: Double = 100

    // TrafficPolicy.
    public static let loadBalancer = LoadBalancerKind.leastRequest
    public static let connectTimeout = MeshDuration.seconds(5)
    public static let circuitBreaker = CircuitBreakerThresholds(
        maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3)
    public static let outlierDetection = OutlierDetection(
        consecutive5xx: 5, consecutiveGatewayErrors: 5, interval: .seconds(10),
        baseEjectionTime: .seconds(30), maxEjectionPercent: 10)
    public static let retryBudget = RetryBudget(percent: 20, minPerSecond: 10)

    // AuthorizationPolicy.
    /// With no AuthorizationPolicy for a service, every authenticated caller is allowed.
    public static let authorizationWithoutPolicy = AuthorizationPolicy.Action.allow
    /// A policy that exists but omits `default` denies what its `allow` rules do not match.
    public static let authorizationPolicyDefault = AuthorizationPolicy.Action.deny
}
