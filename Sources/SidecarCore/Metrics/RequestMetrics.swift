/// The per-request families of the sidecar, which share one handle per (direction, peer):
/// `sidecar_requests_total{direction,peer,code}`, `sidecar_request_duration_seconds{direction,peer}`
/// and `sidecar_bytes_total{direction,peer,flow}`.
///
/// `handle(direction:peer:)` takes a lock; call it when a route table or cluster is built and
/// keep the handle. The same (direction, peer) always returns the same handle.
public final class RequestMetrics: Sendable {
    let table: SeriesTable<RequestMetricsHandle>
    let requests: MetricDescriptor
    let duration: MetricDescriptor
    let bytes: MetricDescriptor

    /// `requests`, `duration` and `bytes` must carry labels `direction,peer` plus `code`,
    /// nothing more, and `direction,peer,flow` respectively.
    public init(
        requests: MetricDescriptor, duration: MetricDescriptor, bytes: MetricDescriptor,
        buckets: HistogramBuckets = .requestLatency
    ) {
        precondition(requests.labelNames == ["direction", "peer", "code"], "\(requests.name) labels")
        precondition(duration.labelNames == ["direction", "peer"], "\(duration.name) labels")
        precondition(bytes.labelNames == ["direction", "peer", "flow"], "\(bytes.name) labels")
        self.requests = requests
        self.duration = duration
        self.bytes = bytes
        table = SeriesTable(labelNames: ["direction", "peer"]) { RequestMetricsHandle(buckets: buckets) }
    }

    /// The handle for requests of `direction` to or from service `peer` (a service name, never
    /// a host, address or path).
    public func handle(direction: TrafficDirection, peer: String) -> RequestMetricsHandle {
        table.resolve([direction.rawValue, peer])
    }

    /// The three families, for the registry.
    public var families: [any MetricFamily] {
        [RequestCountFamily(owner: self), RequestDurationFamily(owner: self), RequestBytesFamily(owner: self)]
    }
}
