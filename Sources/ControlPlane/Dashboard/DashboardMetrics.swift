import Foundation
import MeshAPI

/// What the dashboard asks Prometheus (when `serve --prometheus URL` is given): the traffic on
/// each caller → callee edge (the same instant queries as `control-plane stat`) and a service's
/// golden metrics over the last 15 minutes (range queries) drawn as SVG line charts. Without a
/// Prometheus, or when it fails, the pages say so in words and fall back to declared data.
enum DashboardMetrics {
    struct Traffic: Sendable {
        var edges: [MeshStat.EdgeRow]
        var note: String
    }

    static func edges(prometheus: PrometheusClient?) async -> Traffic {
        guard let prometheus else {
            return Traffic(edges: [], note: "Edges are the dependencies sidecars declared. With serve --prometheus URL they also carry request and success rates.")
        }
        do {
            let queries = try MeshStatQueries(window: "1m")
            let stat = MeshStat(prometheus: prometheus.url, queries: queries, answers: try await prometheus.answers(queries.all))
            return Traffic(edges: stat.edges, note: "Request and success rates over the last minute, from Prometheus at \(prometheus.url); edges only declared are drawn dashed.")
        } catch {
            return Traffic(edges: [], note: "Prometheus at \(prometheus.url) did not answer (\(error)); showing declared dependencies only.")
        }
    }

    /// The soonest workload-certificate expiry. Sidecars report their certificate's notAfter
    /// in every heartbeat (`certificateExpiresAt`), so the control plane knows it for each proxy
    /// of its own; sidecars too old to say are known only to Prometheus
    /// (`sidecar_cert_expiry_timestamp_seconds`), asked when no proxy reported one. Words for
    /// the overview's card: the service, how long, and the time.
    static func soonestCertificateExpiry(
        proxies: [APIMessages.ProxyStatus], prometheus: PrometheusClient?, now: Double = Date().timeIntervalSince1970
    ) async -> (value: String, note: String) {
        let reported = proxies.compactMap { proxy in proxy.certificateExpiresAt.map { (service: proxy.service, notAfter: Double($0)) } }
        if let soonest = reported.min(by: { $0.notAfter < $1.notAfter }) {
            return expiry(service: soonest.service, notAfter: soonest.notAfter, now: now)
        }
        guard let prometheus else { return ("unknown", "no proxy has reported one yet") }
        guard let vector = try? await prometheus.query("min by (service) (sidecar_cert_expiry_timestamp_seconds{service!=\"\"})"),
            let soonest = vector.samples.min(by: { $0.value < $1.value })
        else { return ("unknown", "Prometheus at \(prometheus.url) did not answer") }
        return expiry(service: soonest.labels["service"] ?? "?", notAfter: soonest.value, now: now)
    }

    /// "payments in 23.9 h", "at 2026-12-06T02:00:00Z".
    static func expiry(service: String, notAfter: Double, now: Double) -> (value: String, note: String) {
        ("\(service) \(timeLeft(until: notAfter, now: now))", "at \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: notAfter)))")
    }

    static func timeLeft(until notAfter: Double, now: Double) -> String {
        let left = notAfter - now
        return left <= 0 ? "expired" : left < 3600 ? "in \(Int(left / 60)) min" : "in \(format(left / 3600, digits: 1)) h"
    }

    struct Charts: Sendable {
        var html: String
    }

    /// The service's requests/s, success rate and p50/p99 latency over 15 minutes.
    static func charts(service: String, prometheus: PrometheusClient?) async -> Charts {
        guard let prometheus else {
            return Charts(html: "<p class=\"empty\">No Prometheus configured: start the control plane with <code>serve --prometheus URL</code> for charts.</p>")
        }
        let queries: MeshStatQueries
        do { queries = try MeshStatQueries(window: "1m", service: service) } catch { return Charts(html: "") }
        let requests = queries.serviceQuery(.requestsPerSecond).promQL
        let wanted: [(title: String, unit: String, scale: Double, promQL: String)] = [
            ("Requests per second", "req/s", 1, requests),
            ("Success rate", "%", 100, "(\(queries.serviceQuery(.successesPerSecond).promQL)) / (\(requests))"),
            ("Latency p50", "ms", 1000, queries.serviceQuery(.latencyP50).promQL),
            ("Latency p99", "ms", 1000, queries.serviceQuery(.latencyP99).promQL),
        ]
        let end = Date().timeIntervalSince1970
        var html = "<div class=\"charts\">"
        for chart in wanted {
            do {
                let series = try await prometheus.queryRange(chart.promQL, start: end - 900, end: end, step: 15)
                let points = (series.first ?? []).map { (time: $0.time, value: $0.value * chart.scale) }
                html += DashboardChart(title: chart.title, unit: chart.unit, points: points, start: end - 900, end: end).svg
            } catch {
                html += "<p class=\"empty\">\(HTML.escape(chart.title)): Prometheus did not answer (\(HTML.escape("\(error)"))).</p>"
            }
        }
        return Charts(html: html + "</div>")
    }

    static func format(_ value: Double, digits: Int) -> String {
        String(format: "%.\(digits)f", value)
    }
}

extension PrometheusClient {
    /// A range query (`/api/v1/query_range`): each series' (unix time, value) points.
    func queryRange(_ promQL: String, start: Double, end: Double, step: Int) async throws(MeshStatError) -> [[(time: Double, value: Double)]] {
        let instant = target(for: promQL)
        let range = instant.replacingOccurrences(of: "/api/v1/query?", with: "/api/v1/query_range?")
            + "&start=\(Int(start))&end=\(Int(end))&step=\(step)"
        let (status, body) = try await get(range)
        guard status == 200,
            let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let data = object["data"] as? [String: Any], let result = data["result"] as? [[String: Any]]
        else {
            throw MeshStatError("Prometheus at \(url) answered \(status): \(body.prefix(200))")
        }
        return result.map { series in
            ((series["values"] as? [[Any]]) ?? []).compactMap { pair in
                // The time is a JSON number (whole or not), the value a string.
                guard pair.count == 2, let time = (pair[0] as? NSNumber)?.doubleValue, let text = pair[1] as? String,
                    let value = Double(text),
                    value.isFinite
                else { return nil }
                return (time, value)
            }
        }
    }
}

/// One golden metric as an SVG line chart: a fixed viewBox scaled by CSS, the latest value in
/// words in the caption, and an `aria-label` that says the same for screen readers.
struct DashboardChart {
    var title: String
    var unit: String
    var points: [(time: Double, value: Double)]
    var start: Double
    var end: Double

    var svg: String {
        let width = 600.0, height = 160.0, left = 48.0, bottom = 20.0, top = 10.0
        let maximum = max(points.map(\.value).max() ?? 0, unit == "%" ? 100 : 0.001)
        let latest = points.last.map { DashboardMetrics.format($0.value, digits: 2) + " " + unit } ?? "no data"
        func x(_ time: Double) -> Double { left + (time - start) / max(end - start, 1) * (width - left - 4) }
        func y(_ value: Double) -> Double { top + (1 - value / maximum) * (height - top - bottom) }
        let line = points.map { "\(Int(x($0.time))),\(Int(y($0.value)))" }.joined(separator: " ")
        let label = HTML.escape("\(title), last 15 minutes: latest \(latest), peak \(DashboardMetrics.format(maximum, digits: 2)) \(unit)")
        return """
            <figure class="chart"><figcaption>\(HTML.escape(title)): <strong>\(HTML.escape(latest))</strong></figcaption>
            <svg viewBox="0 0 \(Int(width)) \(Int(height))" role="img" aria-label="\(label)">
            <line class="axis" x1="\(Int(left))" y1="\(Int(height - bottom))" x2="\(Int(width))" y2="\(Int(height - bottom))"/>
            <line class="axis" x1="\(Int(left))" y1="\(Int(top))" x2="\(Int(left))" y2="\(Int(height - bottom))"/>
            <text class="tick" x="\(Int(left - 4))" y="\(Int(top + 8))" text-anchor="end">\(HTML.escape(DashboardMetrics.format(maximum, digits: 1)))</text>
            <text class="tick" x="\(Int(left - 4))" y="\(Int(height - bottom))" text-anchor="end">0</text>
            <text class="tick" x="\(Int(left))" y="\(Int(height - 4))">-15 min</text>
            <text class="tick" x="\(Int(width - 4))" y="\(Int(height - 4))" text-anchor="end">now</text>
            \(points.isEmpty ? "" : "<polyline class=\"series\" points=\"\(line)\"/>")
            </svg></figure>
            """
    }
}
