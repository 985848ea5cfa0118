/// One family on `/metrics`: its descriptor and the samples of its series. The registry writes
/// the `# HELP`/`# TYPE` lines; a family only writes sample lines, in a stable order.
///
/// Implementations read atomics and may take a lock on their series table: exposition is the
/// cold path.
public protocol MetricFamily: Sendable {
    var descriptor: MetricDescriptor { get }
    func writeSamples(to writer: inout PrometheusTextWriter)
}
