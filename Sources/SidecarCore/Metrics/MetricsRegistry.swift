import NIOCore

/// The families one process exposes on `/metrics`, fixed at construction and written sorted
/// by name. Immutable and `Sendable`: exposition may run on any thread while the data plane
/// keeps incrementing.
///
/// A family with no series yet still gets its `# HELP` and `# TYPE` lines (promtool accepts
/// this), so a scrape always shows every name the process can emit.
public struct MetricsRegistry: Sendable {
    public let families: [any MetricFamily]

    public init(families: [any MetricFamily]) {
        let sorted = families.sorted { $0.descriptor.name < $1.descriptor.name }
        for (previous, next) in zip(sorted, sorted.dropFirst()) {
            precondition(previous.descriptor.name != next.descriptor.name, "metric \(next.descriptor.name) declared twice")
        }
        self.families = sorted
    }

    /// Appends the whole exposition to `buffer`.
    public func write(into buffer: inout ByteBuffer) {
        var writer = PrometheusTextWriter(buffer: buffer)
        buffer = ByteBuffer()  // drop our reference so the writer's appends do not copy
        for family in families {
            writer.writeHeader(family.descriptor)
            family.writeSamples(to: &writer)
        }
        buffer = writer.buffer
    }

    public func exposition(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 4096)
        write(into: &buffer)
        return buffer
    }

    /// The exposition as text (tests, debugging).
    public var text: String { String(buffer: exposition()) }

    /// Two registries' families together (e.g. the sidecar's and the process's own).
    public func merging(_ other: MetricsRegistry) -> MetricsRegistry {
        MetricsRegistry(families: families + other.families)
    }
}
