// The three families that read `RequestMetrics`' handles at exposition.

/// `sidecar_requests_total`: one series per status code touched so far.
struct RequestCountFamily: MetricFamily {
    let owner: RequestMetrics
    var descriptor: MetricDescriptor { owner.requests }

    func writeSamples(to writer: inout PrometheusTextWriter) {
        for (labels, handle) in owner.table.snapshot() {
            for (code, count) in handle.touchedCodes {
                writer.writeSample(descriptor.name, labels: labels, extra: ("code", code), value: String(count))
            }
        }
    }
}

/// `sidecar_request_duration_seconds`: a histogram per resolved handle.
struct RequestDurationFamily: MetricFamily {
    let owner: RequestMetrics
    var descriptor: MetricDescriptor { owner.duration }

    func writeSamples(to writer: inout PrometheusTextWriter) {
        for (labels, handle) in owner.table.snapshot() {
            writer.writeHistogram(descriptor.name, labels: labels, histogram: handle.duration)
        }
    }
}

/// `sidecar_bytes_total`: `flow="request"` and `flow="response"` per resolved handle.
struct RequestBytesFamily: MetricFamily {
    let owner: RequestMetrics
    var descriptor: MetricDescriptor { owner.bytes }

    func writeSamples(to writer: inout PrometheusTextWriter) {
        for (labels, handle) in owner.table.snapshot() {
            writer.writeSample(descriptor.name, labels: labels, extra: ("flow", "request"), value: String(handle.requestBytes.value))
            writer.writeSample(descriptor.name, labels: labels, extra: ("flow", "response"), value: String(handle.responseBytes.value))
        }
    }
}
