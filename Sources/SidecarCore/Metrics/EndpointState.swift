/// The state of an upstream endpoint as the `state` label of `sidecar_endpoints`: every
/// endpoint is counted in exactly one state at a time.
public enum EndpointState: String, Sendable, CaseIterable {
    /// Healthy in the registry and not ejected: eligible for load balancing.
    case healthy
    /// Marked unhealthy by the registry (missed heartbeats, failed checks).
    case unhealthy
    /// Healthy in the registry but ejected by outlier detection for now.
    case ejected
}
