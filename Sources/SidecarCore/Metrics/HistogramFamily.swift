/// A histogram family with zero or more labels, all series on the same buckets. With no labels
/// its single series exists from the start; with labels a series appears once resolved.
public final class HistogramFamily: MetricFamily {
    public let descriptor: MetricDescriptor
    public let buckets: HistogramBuckets
    private let table: SeriesTable<Histogram>

    public init(_ descriptor: MetricDescriptor, buckets: HistogramBuckets = .requestLatency) {
        precondition(descriptor.kind == .histogram, "\(descriptor.name) is not a histogram")
        self.descriptor = descriptor
        self.buckets = buckets
        table = SeriesTable(labelNames: descriptor.labelNames) { Histogram(buckets: buckets) }
        if descriptor.labelNames.isEmpty { _ = table.resolve([]) }
    }

    /// The series for these label values. Resolve once and keep it: this takes a lock.
    public func histogram(_ labelValues: String...) -> Histogram { table.resolve(labelValues) }

    public func writeSamples(to writer: inout PrometheusTextWriter) {
        for (labels, histogram) in table.snapshot() {
            writer.writeHistogram(descriptor.name, labels: labels, histogram: histogram)
        }
    }
}
