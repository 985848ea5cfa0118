import NIOCore

/// How this sidecar exports spans (`tracing:` in its file), shared by every loop's
/// `SpanExporter`: where the collector is, what service the spans belong to, the sampler, the
/// batching limits, and the counters that say what happened to the spans.
struct SpanExport: Sendable {
    let endpoint: HostPort
    let path: String
    /// `service.name` of every span (the sidecar's own service).
    let service: String
    let sampler: SpanSampler
    let flushInterval: TimeAmount
    let exportTimeout: TimeAmount
    let capacity: Int
    let batchSize: Int
    /// `sidecar_spans_exported_total` and `sidecar_spans_dropped_total{reason}`.
    let exported: Counter
    let droppedFull: Counter
    let droppedFailed: Counter

    init(
        _ tracing: SidecarConfiguration.Tracing, service: String, metrics: SidecarMetrics,
        flushInterval: TimeAmount = .seconds(1), exportTimeout: TimeAmount = .seconds(5),
        capacity: Int = 2048, batchSize: Int = 512
    ) {
        endpoint = tracing.endpoint
        path = tracing.path
        self.service = service
        sampler = SpanSampler(percent: tracing.sampling)
        self.flushInterval = flushInterval
        self.exportTimeout = exportTimeout
        self.capacity = capacity
        self.batchSize = batchSize
        exported = metrics.spansExported
        droppedFull = metrics.spansDropped(.bufferFull)
        droppedFailed = metrics.spansDropped(.exportFailed)
    }
}
