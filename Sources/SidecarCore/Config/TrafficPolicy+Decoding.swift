
/// Decoding a `TrafficPolicy`; each omitted block or field keeps its `MeshDefaults` value.
extension TrafficPolicy {
    static func decode(_ map: MappingReader, common: MeshResource.Common) -> TrafficPolicy {
        var policy = TrafficPolicy(name: common.name, resourceVersion: common.resourceVersion,
                                   service: map.serviceName() ?? "")
        policy.loadBalancer = map.oneOf("loadBalancer") ?? MeshDefaults.loadBalancer
        if let breaker = map.mapping("circuitBreaker") {
            let defaults = MeshDefaults.circuitBreaker
            policy.circuitBreaker = CircuitBreakerThresholds(
                maxConnections: breaker.int("maxConnections", range: 1...Int.max) ?? defaults.maxConnections,
                maxPendingRequests: breaker.int("maxPendingRequests", range: 0...Int.max) ?? defaults.maxPendingRequests,
                maxRequests: breaker.int("maxRequests", range: 1...Int.max) ?? defaults.maxRequests,
                maxRetries: breaker.int("maxRetries", range: 0...Int.max) ?? defaults.maxRetries)
            breaker.finish()
        }
        if let outlier = map.mapping("outlierDetection") {
            let defaults = MeshDefaults.outlierDetection
            policy.outlierDetection = OutlierDetection(
                consecutive5xx: outlier.int("consecutive5xx", range: 1...Int.max) ?? defaults.consecutive5xx,
                consecutiveGatewayErrors: outlier.int("consecutiveGatewayErrors", range: 1...Int.max)
                    ?? defaults.consecutiveGatewayErrors,
                interval: outlier.duration("interval") ?? defaults.interval,
                baseEjectionTime: outlier.duration("baseEjectionTime") ?? defaults.baseEjectionTime,
                maxEjectionPercent: outlier.percent("maxEjectionPercent") ?? defaults.maxEjectionPercent)
            outlier.finish()
        }
        if let budget = map.mapping("retryBudget") {
            let defaults = MeshDefaults.retryBudget
            policy.retryBudget = RetryBudget(
                percent: budget.percent("percent") ?? defaults.percent,
                minPerSecond: budget.int("minPerSecond", range: 0...Int.max) ?? defaults.minPerSecond)
            budget.finish()
        }
        if let limit = map.mapping("rateLimit") {
            policy.rateLimit = RateLimit.decode(limit, allowsPerCaller: true)
            limit.finish()
        }
        policy.connectTimeout = map.duration("connectTimeout") ?? MeshDefaults.connectTimeout
        if let fallback = map.mapping("fallback") {
            policy.fallback = FallbackResponse(
                status: fallback.int("status", range: 100...599, required: true) ?? 200,
                headers: fallback.optional("headers").flatMap {
                    map.reader.headerMap($0, path: fallback.childPath("headers"))
                } ?? [:],
                body: fallback.string("body") ?? "")
            fallback.finish()
        }
        return policy
    }
}
