import Dispatch
import NIOCore
import Testing

@testable import SidecarCore

/// Counter, gauge and histogram values, and the exact exposition text they produce.
@Suite struct MetricPrimitiveTests {
    @Test func counterAndGaugeKeepTheirValues() {
        let counter = Counter()
        counter.increment()
        counter.add(41)
        #expect(counter.value == 42)

        let gauge = Gauge()
        gauge.set(10)
        gauge.increment()
        gauge.decrement(by: 3)
        #expect(gauge.value == 8)
        gauge.set(false)
        #expect(gauge.value == 0)
        gauge.set(true)
        #expect(gauge.value == 1)
    }

    @Test func histogramBucketsAreCumulativeAndEndInInf() {
        let histogram = Histogram(buckets: HistogramBuckets(seconds: [0.001, 0.01, 0.1]))
        histogram.observe(nanoseconds: 500_000)  // 0.5 ms -> le 0.001
        histogram.observe(nanoseconds: 1_000_000)  // exactly on a bound counts in it
        histogram.observe(.milliseconds(5))  // le 0.01
        histogram.observe(.seconds(3))  // +Inf only
        #expect(histogram.cumulativeCounts == [2, 3, 3, 4])
        #expect(histogram.count == 4)
        #expect(histogram.sumNanoseconds == 3_006_500_000)
        #expect(histogram.buckets.labels == ["0.001", "0.01", "0.1"])
    }

    @Test func requestLatencyBucketsSpanHalfAMillisecondToThirtySeconds() {
        let buckets = HistogramBuckets.requestLatency
        #expect(buckets.labels.first == "0.0005")
        #expect(buckets.labels.last == "30")
        #expect(buckets.upperBoundsNanos.first == 500_000)
        #expect(buckets.index(of: 31_000_000_000) == buckets.upperBoundsNanos.count)
    }

    @Test func smallRegistryHasTheExactText() {
        let requests = CounterFamily(MetricDescriptor("demo_requests_total", .counter, labels: ["peer"], help: "Requests."))
        let open = GaugeFamily(MetricDescriptor("demo_open", .gauge, help: "Open \\ now.\nSecond line."))
        let latency = HistogramFamily(
            MetricDescriptor("demo_seconds", .histogram, help: "Latency."), buckets: HistogramBuckets(seconds: [0.1, 1]))
        let empty = CounterFamily(MetricDescriptor("demo_empty_total", .counter, labels: ["peer"], help: "Nothing yet."))
        requests.counter("web").add(3)
        requests.counter("api").increment()
        open.gauge().set(-2)
        latency.histogram().observe(nanoseconds: 50_000_000)
        latency.histogram().observe(nanoseconds: 500_000_000)
        latency.histogram().observe(nanoseconds: 2_000_000_000)

        let registry = MetricsRegistry(families: [requests, open, latency, empty])
        #expect(registry.text == """
            # HELP demo_empty_total Nothing yet.
            # TYPE demo_empty_total counter
            # HELP demo_open Open \\\\ now.\\nSecond line.
            # TYPE demo_open gauge
            demo_open -2
            # HELP demo_requests_total Requests.
            # TYPE demo_requests_total counter
            demo_requests_total{peer="api"} 1
            demo_requests_total{peer="web"} 3
            # HELP demo_seconds Latency.
            # TYPE demo_seconds histogram
            demo_seconds_bucket{le="0.1"} 1
            demo_seconds_bucket{le="1"} 2
            demo_seconds_bucket{le="+Inf"} 3
            demo_seconds_sum 2.55
            demo_seconds_count 3

            """)
    }

    @Test func labelValuesAreEscaped() {
        let family = CounterFamily(MetricDescriptor("demo_total", .counter, labels: ["peer"], help: "x"))
        family.counter("a\"b\\c\nd").increment()
        let text = MetricsRegistry(families: [family]).text
        #expect(text.contains(#"demo_total{peer="a\"b\\c\nd"} 1"#))
        #expect(LabelSet.escape("plain-name") == "plain-name")
    }

    @Test func sameLabelsResolveToTheSameSeries() {
        let family = GaugeFamily(MetricDescriptor("demo_gauge", .gauge, labels: ["peer", "state"], help: "x"))
        #expect(family.gauge("a", "b") === family.gauge("a", "b"))
        #expect(family.gauge("a", "b") !== family.gauge("a", "c"))
    }

    @Test func concurrentIncrementsGiveExactTotals() {
        let metrics = SidecarMetrics()
        let handle = metrics.requests.handle(direction: .outbound, peer: "payments")
        let counter = Counter()
        let threads = 8
        let perThread = 50_000
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread {
                counter.increment()
                handle.record(
                    status: index % 2 == 0 ? 200 : 503, durationNanos: 1_000, requestBytes: 2, responseBytes: 3)
                _ = thread
            }
        }
        let total = UInt64(threads * perThread)
        #expect(counter.value == total)
        #expect(handle.count(status: 200) == total / 2)
        #expect(handle.count(status: 503) == total / 2)
        #expect(handle.duration.count == total)
        #expect(handle.duration.sumNanoseconds == total * 1_000)
        #expect(handle.requestBytes.value == total * 2)
        #expect(handle.responseBytes.value == total * 3)
    }
}
