/// The upstream-cluster series of one peer service, resolved together when the cluster is
/// built: circuit breaker, outlier detection, retry budget and endpoint counts. Holding it,
/// the data plane touches atomics only.
public struct PeerMetrics: Sendable {
    public let peer: String
    /// `sidecar_retry_budget_exhausted_total{peer}`: a retry refused because the budget was spent.
    public let retryBudgetExhausted: Counter
    /// `sidecar_circuit_breaker_open{peer}`: 1 while any breaker limit is overflowing, else 0.
    public let circuitBreakerOpen: Gauge
    /// `sidecar_circuit_breaker_rejections_total{peer}`: requests refused with `circuit-open`.
    public let circuitBreakerRejections: Counter
    /// `sidecar_outlier_ejections_total{peer}`: endpoints ejected by outlier detection.
    public let outlierEjections: Counter
    private let healthyEndpoints: Gauge
    private let unhealthyEndpoints: Gauge
    private let ejectedEndpoints: Gauge

    init(peer: String, metrics: SidecarMetrics) {
        self.peer = peer
        retryBudgetExhausted = metrics.retryBudgetExhausted.counter(peer)
        circuitBreakerOpen = metrics.circuitBreakerOpen.gauge(peer)
        circuitBreakerRejections = metrics.circuitBreakerRejections.counter(peer)
        outlierEjections = metrics.outlierEjections.counter(peer)
        healthyEndpoints = metrics.endpoints.gauge(peer, EndpointState.healthy.rawValue)
        unhealthyEndpoints = metrics.endpoints.gauge(peer, EndpointState.unhealthy.rawValue)
        ejectedEndpoints = metrics.endpoints.gauge(peer, EndpointState.ejected.rawValue)
    }

    /// `sidecar_endpoints{peer,state}`: how many of the peer's endpoints are in `state`.
    public func endpoints(_ state: EndpointState) -> Gauge {
        switch state {
        case .healthy: healthyEndpoints
        case .unhealthy: unhealthyEndpoints
        case .ejected: ejectedEndpoints
        }
    }
}
