/// A gauge family with zero or more labels. With no labels its single series exists from
/// the start (and is exposed as 0); with labels a series appears once resolved.
public final class GaugeFamily: MetricFamily {
    public let descriptor: MetricDescriptor
    private let table: SeriesTable<Gauge>

    public init(_ descriptor: MetricDescriptor) {
        precondition(descriptor.kind == .gauge, "\(descriptor.name) is not a gauge")
        self.descriptor = descriptor
        table = SeriesTable(labelNames: descriptor.labelNames) { Gauge() }
        if descriptor.labelNames.isEmpty { _ = table.resolve([]) }
    }

    /// The series for these label values, in the order the descriptor names the labels.
    /// Resolve once and keep it: this takes a lock.
    public func gauge(_ labelValues: String...) -> Gauge { table.resolve(labelValues) }

    public func gauge(labelValues: [String]) -> Gauge { table.resolve(labelValues) }

    /// Every series made so far (for families set whole from a count, such as instances).
    public var allGauges: [Gauge] { table.snapshot().map(\.metric) }

    public func writeSamples(to writer: inout PrometheusTextWriter) {
        for (labels, gauge) in table.snapshot() {
            writer.writeSample(descriptor.name, labels: labels, value: String(gauge.value))
        }
    }
}
