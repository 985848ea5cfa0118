import Foundation
import MeshTestSupport
import Testing

@testable import ControlPlane

/// `control-plane stat` without a Prometheus: the PromQL it asks, how canned answers of the
/// query API become service and edge rows, and the table and JSON it prints.
@Suite struct MeshStatTests {
    /// A query API answer holding these samples, as Prometheus writes it.
    static func answer(_ samples: [([String: String], String)]) -> String {
        let result = samples.map { labels, value in
            let metric = labels.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",")
            return "{\"metric\":{\(metric)},\"value\":[1764880000.123,\"\(value)\"]}"
        }
        return "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[\(result.joined(separator: ","))]}}"
    }

    /// The demo mesh a minute into a fault on ledger: loadgen -> web -> payments -> ledger.
    static func demoAnswers(_ queries: MeshStatQueries) throws -> [MeshStatQuery: PrometheusVector] {
        let web = ["service": "web"], payments = ["service": "payments"], ledger = ["service": "ledger"]
        let byService: [MeshStatQuery.Metric: String] = [
            .sidecars: answer([(web, "1"), (payments, "2"), (ledger, "1"), (["service": "loadgen"], "1")]),
            .requestsPerSecond: answer([(web, "5"), (payments, "5"), (ledger, "5")]),
            .successesPerSecond: answer([(web, "4"), (payments, "4"), (ledger, "4")]),
            .latencyP50: answer([(web, "0.0035"), (payments, "0.002"), (ledger, "0.001")]),
            .latencyP95: answer([(web, "0.0125"), (payments, "0.009"), (ledger, "0.004")]),
            .latencyP99: answer([(web, "0.0475"), (payments, "0.02"), (ledger, "NaN")]),
            .retriesPerSecond: answer([(["peer": "ledger"], "0.5")]),
            .openBreakers: answer([(["peer": "ledger"], "1"), (["peer": "payments"], "0"), (["peer": "unknown"], "0")]),
            .ejectedEndpoints: answer([(["peer": "ledger"], "0"), (["peer": "payments"], "1")]),
        ]
        func edge(_ from: String, _ to: String) -> [String: String] { ["service": from, "peer": to] }
        let byEdge: [MeshStatQuery.Metric: String] = [
            .sidecars: answer([(edge("web", "payments"), "1"), (edge("payments", "ledger"), "2")]),
            .requestsPerSecond: answer([(edge("loadgen", "web"), "5"), (edge("web", "payments"), "5"), (edge("payments", "ledger"), "5")]),
            .successesPerSecond: answer([(edge("loadgen", "web"), "4"), (edge("web", "payments"), "4"), (edge("payments", "ledger"), "4")]),
            .latencyP50: answer([(edge("web", "payments"), "0.004")]),
            .latencyP95: answer([(edge("web", "payments"), "0.015")]),
            .latencyP99: answer([(edge("web", "payments"), "+Inf")]),
            .retriesPerSecond: answer([(edge("payments", "ledger"), "0.5")]),
            // Every sidecar exports breaker gauges for each service it knows: zeros make no edge.
            .openBreakers: answer([(edge("payments", "ledger"), "1"), (edge("ledger", "web"), "0")]),
            .ejectedEndpoints: answer([(edge("web", "payments"), "1")]),
        ]
        var answers: [MeshStatQuery: PrometheusVector] = [:]
        for (metric, json) in byService { answers[queries.serviceQuery(metric)] = try PrometheusVector(json: json) }
        for (metric, json) in byEdge { answers[queries.edgeQuery(metric)] = try PrometheusVector(json: json) }
        return answers
    }

    @Test func queriesAskForInboundPerServiceAndOutboundPerEdge() throws {
        let queries = try MeshStatQueries()
        #expect(queries.all.count == 2 * MeshStatQuery.Metric.allCases.count)
        #expect(queries.serviceQuery(.requestsPerSecond).promQL
            == "sum by (service) (rate(sidecar_requests_total{direction=\"inbound\"}[1m]))")
        #expect(queries.serviceQuery(.successesPerSecond).promQL
            == "sum by (service) (rate(sidecar_requests_total{direction=\"inbound\",code!~\"5..\"}[1m]))")
        #expect(queries.serviceQuery(.latencyP95).promQL
            == "histogram_quantile(0.95, sum by (service, le) (rate(sidecar_request_duration_seconds_bucket{direction=\"inbound\"}[1m])))")
        #expect(queries.serviceQuery(.openBreakers).keyLabels == ["peer"])
        #expect(queries.edgeQuery(.requestsPerSecond).promQL
            == "sum by (service, peer) (rate(sidecar_requests_total{direction=\"outbound\"}[1m]))")
        #expect(queries.edgeQuery(.latencyP99).promQL
            == "histogram_quantile(0.99, sum by (service, peer, le) (rate(sidecar_request_duration_seconds_bucket{direction=\"outbound\"}[1m])))")
        #expect(queries.edgeQuery(.retriesPerSecond).promQL == "sum by (service, peer) (rate(sidecar_retries_total[1m]))")
        #expect(queries.edgeQuery(.ejectedEndpoints).promQL == "sum by (service, peer) (sidecar_endpoints{state=\"ejected\"})")
        for query in queries.all where query.scope == .edge { #expect(query.keyLabels == ["service", "peer"]) }
    }

    @Test func aServiceFilterAndWindowGoIntoTheQueriesEscaped() throws {
        let queries = try MeshStatQueries(window: "5m", service: "pay\"ments")
        #expect(queries.serviceQuery(.requestsPerSecond).promQL
            == "sum by (service) (rate(sidecar_requests_total{direction=\"inbound\",service=\"pay\\\"ments\"}[5m]))")
        #expect(queries.serviceQuery(.retriesPerSecond).promQL
            == "sum by (peer) (rate(sidecar_retries_total{peer!=\"\",peer=\"pay\\\"ments\"}[5m]))")
        for bad in ["", "1", "m", "5 m", "1m; drop", "-1m"] {
            #expect(throws: MeshStatError.self, "\(bad)") { try MeshStatQueries(window: bad) }
        }
        for good in ["30s", "1m", "500ms", "2h"] { #expect(try MeshStatQueries(window: good).window == good) }
    }

    @Test func theQueryTargetIsPercentEncoded() throws {
        let client = try PrometheusClient(url: "http://127.0.0.1:9090/prom/")
        let target = client.target(for: "sum by (peer) (x{code!~\"5..\"} + 1)")
        #expect(target == "/prom/api/v1/query?query=sum%20by%20(peer)%20(x%7Bcode!~%225..%22%7D%20%2B%201)")
        // stat evaluates all its queries at one instant, so their ratios compare the same window.
        #expect(client.target(for: "up", at: 1_700_000_000.25) == "/prom/api/v1/query?query=up&time=1700000000.250")
        #expect(throws: MeshStatError.self) { try PrometheusClient(url: "https://127.0.0.1:9090") }
        #expect(throws: MeshStatError.self) { try PrometheusClient(url: "127.0.0.1:9090") }
    }

    @Test func answersBecomeServiceAndEdgeRows() throws {
        let queries = try MeshStatQueries()
        let stat = MeshStat(prometheus: "http://127.0.0.1:9090", queries: queries, answers: try Self.demoAnswers(queries))
        #expect(stat.services.map(\.service) == ["ledger", "loadgen", "payments", "web"])
        let ledger = try #require(stat.services.first { $0.service == "ledger" }).stats
        #expect(ledger == MeshStat.Golden(
            sidecars: 1, requestsPerSecond: 5, successRate: 0.8, latencyP50Ms: 1, latencyP95Ms: 4, latencyP99Ms: nil,
            retriesPerSecond: 0.5, openBreakers: 1, ejectedEndpoints: 0))
        let loadgen = try #require(stat.services.first { $0.service == "loadgen" }).stats
        #expect(loadgen == MeshStat.Golden(sidecars: 1), "no inbound traffic: no success rate, no latency")
        #expect(stat.services.first { $0.service == "payments" }?.stats.ejectedEndpoints == 1)
        #expect(stat.edges.map { "\($0.from)->\($0.to)" } == ["loadgen->web", "payments->ledger", "web->payments"])
        let webPayments = try #require(stat.edges.first { $0.from == "web" }).stats
        #expect(webPayments.latencyP50Ms == 4 && webPayments.latencyP99Ms == nil && webPayments.ejectedEndpoints == 1)
        #expect(webPayments.successRate == 0.8 && webPayments.sidecars == 1)
    }

    @Test func aServiceFilterKeepsItsRowAndItsEdges() throws {
        let queries = try MeshStatQueries(service: "payments")
        let stat = MeshStat(prometheus: "http://p", queries: queries, answers: try Self.demoAnswers(queries))
        #expect(stat.services.map(\.service) == ["payments"])
        #expect(stat.edges.map { "\($0.from)->\($0.to)" } == ["payments->ledger", "web->payments"])
    }

    @Test func theTableAlignsColumnsAndShowsMissingNumbersAsDashes() throws {
        let queries = try MeshStatQueries(service: "payments")
        let stat = MeshStat(prometheus: "http://p", queries: queries, answers: try Self.demoAnswers(queries))
        #expect(stat.table == """
            SERVICE   SIDECARS  SUCCESS  RPS  LATENCY_P50  LATENCY_P95  LATENCY_P99  RETRIES/S  BREAKERS_OPEN  EJECTED
            payments  2         80.00%   5.0  2.0ms        9.0ms        20ms         0.0        0              1

            FROM      TO        SIDECARS  SUCCESS  RPS  LATENCY_P50  LATENCY_P95  LATENCY_P99  RETRIES/S  BREAKERS_OPEN  EJECTED
            payments  ledger    2         80.00%   5.0  -            -            -            0.5        1              0
            web       payments  1         80.00%   5.0  4.0ms        15ms         -            0.0        0              1

            """)
        let empty = MeshStat(prometheus: "http://p", window: "1m", services: [], edges: [])
        #expect(empty.table.contains("No service has reported to Prometheus at http://p"))
        #expect(empty.table.contains("No caller -> callee traffic in the last 1m."))
    }

    @Test func jsonCarriesEveryKeyWithNullForMissingNumbers() throws {
        let queries = try MeshStatQueries(service: "ledger")
        let stat = MeshStat(prometheus: "http://p", queries: queries, answers: try Self.demoAnswers(queries))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(stat.json.utf8)) as? [String: Any])
        #expect(object["prometheus"] as? String == "http://p")
        #expect(object["window"] as? String == "1m")
        let services = try #require(object["services"] as? [[String: Any]])
        #expect(services.count == 1)
        #expect(services[0]["service"] as? String == "ledger")
        #expect(services[0]["successRate"] as? Double == 0.8)
        #expect(services[0]["latencyP99Ms"] is NSNull)
        #expect(services[0]["openBreakers"] as? Int == 1)
        let edges = try #require(object["edges"] as? [[String: Any]])
        #expect(edges.count == 1)
        #expect(edges[0]["from"] as? String == "payments" && edges[0]["to"] as? String == "ledger")
        #expect(Set(edges[0].keys) == [
            "from", "to", "sidecars", "requestsPerSecond", "successRate", "latencyP50Ms", "latencyP95Ms", "latencyP99Ms",
            "retriesPerSecond", "openBreakers", "ejectedEndpoints",
        ])
    }

    @Test func prometheusErrorsAndOddAnswersAreClear() throws {
        let refused = #"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#
        #expect(throws: MeshStatError("Prometheus refused the query (bad_data): 1:5: parse error: unexpected")) {
            try PrometheusVector(json: refused)
        }
        #expect(throws: MeshStatError.self) { try PrometheusVector(json: "<html>not found</html>") }
        #expect(throws: MeshStatError("Prometheus answered a matrix, not a vector")) {
            try PrometheusVector(json: #"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
        }
        let special = try PrometheusVector(json: Self.answer([([:], "NaN"), ([:], "+Inf"), ([:], "-Inf"), ([:], "1e-3")]))
        #expect(special.samples[0].value.isNaN)
        #expect(special.samples.dropFirst().map(\.value) == [.infinity, -.infinity, 0.001])
    }

    @Test func anUnreachablePrometheusIsNamed() async throws {
        let port = try freeLoopbackPort()
        let client = try PrometheusClient(url: "http://127.0.0.1:\(port)")
        await #expect {
            _ = try await client.answers(try MeshStatQueries().all)
        } throws: { error in
            let text = "\(error)"
            return text.contains("cannot reach Prometheus at http://127.0.0.1:\(port)") && text.contains("--prometheus")
        }
    }
}
