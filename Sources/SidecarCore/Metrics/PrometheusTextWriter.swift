import NIOCore

/// Writes the Prometheus text exposition format 0.0.4 into a `ByteBuffer`: `# HELP` and
/// `# TYPE` lines, sample lines with pre-escaped labels, histogram series.
public struct PrometheusTextWriter {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public var buffer: ByteBuffer

    public init(buffer: ByteBuffer) {
        self.buffer = buffer
    }

    public mutating func writeHeader(_ descriptor: MetricDescriptor) {
        buffer.writeStaticString("# HELP ")
        buffer.writeString(descriptor.name)
        buffer.writeStaticString(" ")
        buffer.writeString(PrometheusTextWriter.escapeHelp(descriptor.help))
        buffer.writeStaticString("\n# TYPE ")
        buffer.writeString(descriptor.name)
        buffer.writeStaticString(" ")
        buffer.writeString(descriptor.kind.rawValue)
        buffer.writeStaticString("\n")
    }

    /// `name{labels,extra="value"} value`; `suffix` is appended to the name (`_bucket`, `_sum`).
    public mutating func writeSample(
        _ name: String, suffix: StaticString? = nil, labels: LabelSet,
        extra: (name: StaticString, value: String)? = nil, value: String
    ) {
        buffer.writeString(name)
        if let suffix { buffer.writeStaticString(suffix) }
        if !labels.rendered.isEmpty || extra != nil {
            buffer.writeStaticString("{")
            buffer.writeString(labels.rendered)
            if let extra {
                if !labels.rendered.isEmpty { buffer.writeStaticString(",") }
                buffer.writeStaticString(extra.name)
                buffer.writeStaticString("=\"")
                buffer.writeString(LabelSet.escape(extra.value))
                buffer.writeStaticString("\"")
            }
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString(" ")
        buffer.writeString(value)
        buffer.writeStaticString("\n")
    }

    /// The `_bucket` series (cumulative, then `+Inf`), `_sum` in seconds and `_count`.
    public mutating func writeHistogram(_ name: String, labels: LabelSet, histogram: Histogram) {
        let cumulative = histogram.cumulativeCounts
        for (index, bound) in histogram.buckets.labels.enumerated() {
            writeSample(name, suffix: "_bucket", labels: labels, extra: ("le", bound), value: String(cumulative[index]))
        }
        let total = cumulative[cumulative.count - 1]
        writeSample(name, suffix: "_bucket", labels: labels, extra: ("le", "+Inf"), value: String(total))
        writeSample(name, suffix: "_sum", labels: labels, value: PrometheusTextWriter.format(histogram.sumSeconds))
        writeSample(name, suffix: "_count", labels: labels, value: String(total))
    }

    /// A float as Prometheus parses it (`1`, `0.25`, `1e-05`, `+Inf`, `NaN`).
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.description
    }

    /// HELP text escaping: backslash and line feed.
    static func escapeHelp(_ help: String) -> String {
        guard help.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 0x0A }) else { return help }
        var escaped = ""
        for character in help.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }
}
