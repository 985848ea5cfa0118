import SidecarCore

/// Every metric the control plane exposes on its `/metrics`, declared here with HELP text,
/// type and labels (DESIGN.md, "Metrics"), on the same primitives as the sidecar so the
/// control plane adopts them as they are.
///
/// Label values are bounded: service names, health words, route patterns (never a raw path
/// with names or ids in it) and status codes.
public final class ControlPlaneMetrics: Sendable {
    let instances = GaugeFamily(MetricDescriptor(
        "control_plane_instances", .gauge, labels: ["service", "health"],
        help: "Registered instances, by service and health."))
    let watchersFamily = GaugeFamily(MetricDescriptor(
        "control_plane_watchers", .gauge,
        help: "Sidecars currently watching for configuration."))
    let pushDuration = HistogramFamily(MetricDescriptor(
        "control_plane_push_duration_seconds", .histogram,
        help: "Time from a change being stored to its push to one watcher, in seconds."))
    let certificatesIssuedFamily = CounterFamily(MetricDescriptor(
        "control_plane_certificates_issued_total", .counter,
        help: "Workload certificates issued from CSRs."))
    let apiRequests = CounterFamily(MetricDescriptor(
        "control_plane_api_requests_total", .counter, labels: ["route", "code"],
        help: "API requests answered, by route pattern and status code."))

    /// `control_plane_watchers`.
    public let watcherCount: Gauge
    /// `control_plane_push_duration_seconds`.
    public let pushDurationHistogram: Histogram
    /// `control_plane_certificates_issued_total`.
    public let certificatesIssuedCount: Counter

    public let registry: MetricsRegistry

    public init() {
        watcherCount = watchersFamily.gauge()
        pushDurationHistogram = pushDuration.histogram()
        certificatesIssuedCount = certificatesIssuedFamily.counter()
        registry = MetricsRegistry(families: [instances, watchersFamily, pushDuration, certificatesIssuedFamily, apiRequests])
    }

    /// `control_plane_instances{service,health}`; `health` is a word such as `healthy` or `unhealthy`.
    public func instances(service: String, health: String) -> Gauge { instances.gauge(service, health) }

    /// `control_plane_api_requests_total{route,code}`; `route` is the route's pattern
    /// (`/v1/resources/{kind}`), never the request path itself.
    public func apiRequests(route: String, code: Int) -> Counter { apiRequests.counter(route, String(code)) }

    /// Sets `control_plane_instances` from a fresh count; series not in `counts` drop to 0,
    /// so an instance that turned unhealthy or left is not counted twice.
    public func setInstanceCounts(_ counts: [(service: String, health: String, count: Int)]) {
        for gauge in instances.allGauges { gauge.set(0) }
        for row in counts { instances.gauge(row.service, row.health).set(Int64(row.count)) }
    }

    // Recording, in the words the control plane uses.
    public func countRequest(route: String, code: Int) { apiRequests(route: route, code: code).increment() }
    public func countCertificateIssued() { certificatesIssuedCount.increment() }
    public func setWatchers(_ count: Int) { watcherCount.set(Int64(count)) }
    public func observePush(seconds: Double) { pushDurationHistogram.observe(nanoseconds: UInt64(max(0, seconds) * 1e9)) }
    public var watchers: Int { Int(watcherCount.value) }
    public var certificatesIssued: Int { Int(certificatesIssuedCount.value) }
    public var pushCount: Int { Int(pushDurationHistogram.count) }
}
