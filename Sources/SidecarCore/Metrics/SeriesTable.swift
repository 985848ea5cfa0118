import Synchronization

/// The series of one labeled family, keyed by label values: resolving a series takes a lock
/// and a dictionary lookup, so callers do it once (when a route table or cluster is built)
/// and keep the returned metric object for the hot path.
///
/// The same label values always give back the same object, so rebuilt route tables keep
/// counting into the same series.
public final class SeriesTable<Metric: AnyObject & Sendable>: Sendable {
    public let labelNames: [String]
    private let make: @Sendable () -> Metric
    private let series = Mutex<[[String]: (labels: LabelSet, metric: Metric)]>([:])

    public init(labelNames: [String], make: @escaping @Sendable () -> Metric) {
        self.labelNames = labelNames
        self.make = make
    }

    /// The series for `values` (in `labelNames` order), made on first use.
    public func resolve(_ values: [String]) -> Metric {
        precondition(values.count == labelNames.count, "expected labels \(labelNames), got \(values)")
        return series.withLock { table in
            if let existing = table[values] { return existing.metric }
            let metric = make()
            table[values] = (LabelSet(names: labelNames, values: values), metric)
            return metric
        }
    }

    /// Every series made so far, ordered by label values (stable exposition).
    public func snapshot() -> [(labels: LabelSet, metric: Metric)] {
        series.withLock { Array($0.values) }.sorted { $0.labels < $1.labels }
    }
}
