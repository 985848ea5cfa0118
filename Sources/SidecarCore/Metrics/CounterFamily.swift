/// A counter family with zero or more labels. With no labels its single series exists from
/// the start (and is exposed as 0); with labels a series appears once resolved.
public final class CounterFamily: MetricFamily {
    public let descriptor: MetricDescriptor
    private let table: SeriesTable<Counter>

    public init(_ descriptor: MetricDescriptor) {
        precondition(descriptor.kind == .counter, "\(descriptor.name) is not a counter")
        self.descriptor = descriptor
        table = SeriesTable(labelNames: descriptor.labelNames) { Counter() }
        if descriptor.labelNames.isEmpty { _ = table.resolve([]) }
    }

    /// The series for these label values, in the order the descriptor names the labels.
    /// Resolve once and keep it: this takes a lock.
    public func counter(_ labelValues: String...) -> Counter { table.resolve(labelValues) }

    public func counter(labelValues: [String]) -> Counter { table.resolve(labelValues) }

    public func writeSamples(to writer: inout PrometheusTextWriter) {
        for (labels, counter) in table.snapshot() {
            writer.writeSample(descriptor.name, labels: labels, value: String(counter.value))
        }
    }
}
