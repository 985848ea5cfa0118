import ArgumentParser
import ControlPlane
import Foundation

/// `control-plane stat [SERVICE] [--prometheus URL] [-o json]`: golden metrics per service and
/// per caller → callee edge, from Prometheus (like `linkerd viz stat`). Needs no control plane:
/// the numbers are what Prometheus scraped from the sidecars.
struct StatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stat",
        abstract: "Golden metrics per service and per caller -> callee edge, from Prometheus.",
        discussion: """
            Requests/s, success rate (answers that are not 5xx), latency p50/p95/p99, retries/s, open \
            circuit breakers and ejected endpoints over the last --window, from instant queries of \
            Prometheus' HTTP API over the sidecars' sidecar_* metrics. Prometheus must give each \
            sidecar target a `service` label naming its service (deploy/prometheus/prometheus.yml \
            and scripts/demo.sh do). A service's row is its sidecars' inbound view; an edge's row is \
            the caller's sidecar's outbound view.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json
    }

    @Argument(help: "Only this service's row and the edges into and out of it.")
    var service: String?

    @Option(name: .long, help: ArgumentHelp(
        "Prometheus base URL (env MESH_PROMETHEUS, default http://127.0.0.1:9090).", valueName: "url"))
    var prometheus: String?

    @Option(name: .long, help: ArgumentHelp("Rate window, a Prometheus duration.", valueName: "duration"))
    var window: String = "1m"

    @Option(name: .shortAndLong, help: "Output format: table or json.")
    var output: Format = .table

    func run() async throws {
        try await reportingErrors {
            let environment = ProcessInfo.processInfo.environment["MESH_PROMETHEUS"].flatMap { $0.isEmpty ? nil : $0 }
            let client = try PrometheusClient(url: prometheus ?? environment ?? "http://127.0.0.1:9090")
            let queries = try MeshStatQueries(window: window, service: service)
            let stat = MeshStat(prometheus: client.url, queries: queries, answers: try await client.answers(queries.all))
            switch output {
            case .table: print(stat.table, terminator: "")
            case .json: print(stat.json, terminator: "")
            }
        }
    }
}
