import Foundation

/// The PromQL instant queries behind `control-plane stat`: one per golden metric, for each
/// service (what its sidecars saw inbound, and what its callers saw towards it) and for each
/// caller → callee edge (what the caller's sidecar saw outbound).
///
/// Sidecar metrics name only the other side of a request (`peer`); which service a sidecar
/// belongs to comes from the scrape: every sidecar target carries a `service` target label
/// (deploy/prometheus/prometheus.yml, scripts/demo.sh). Pure values: built and checked
/// without a Prometheus.
public struct MeshStatQuery: Sendable, Hashable {
    /// Whose numbers a query gives: one row per service, or per caller → callee edge.
    public enum Scope: String, Sendable, Hashable, CaseIterable {
        case service, edge
    }

    /// The golden metric a query computes.
    public enum Metric: String, Sendable, Hashable, CaseIterable {
        /// Sidecars of the service that Prometheus scrapes (service scope only).
        case sidecars
        case requestsPerSecond, successesPerSecond
        case latencyP50, latencyP95, latencyP99
        case retriesPerSecond
        /// Callers' circuit breakers that are open towards the service (limit overflowing).
        case openBreakers
        /// Endpoints of the service that callers' outlier detection ejected.
        case ejectedEndpoints
    }

    public var scope: Scope
    public var metric: Metric
    /// The PromQL expression.
    public var promQL: String
    /// The result labels that name the row: `[service]` or `[peer]` for a service, `[service, peer]`
    /// (caller, callee) for an edge.
    public var keyLabels: [String]
}

/// Every query one `stat` run makes.
public struct MeshStatQueries: Sendable {
    /// Rate window, a Prometheus duration (`1m`, `30s`).
    public var window: String
    /// Only this service's row and the edges into and out of it; nil for all.
    public var service: String?

    public init(window: String = "1m", service: String? = nil) throws(MeshStatError) {
        guard Self.isPrometheusDuration(window) else {
            throw MeshStatError("--window \"\(window)\" is not a Prometheus duration (use 30s, 1m, 5m)")
        }
        self.window = window
        self.service = service
    }

    public var all: [MeshStatQuery] {
        MeshStatQuery.Metric.allCases.map { serviceQuery($0) } + MeshStatQuery.Metric.allCases.map { edgeQuery($0) }
    }

    /// A service's row: its own sidecars' inbound view (requests, latency), and its callers'
    /// outbound view of it (retries, breakers, ejections), keyed by `peer`.
    public func serviceQuery(_ metric: MeshStatQuery.Metric) -> MeshStatQuery {
        let own = service.map { ",service=\"\(Self.escape($0))\"" } ?? ""
        let asPeer = service.map { ",peer=\"\(Self.escape($0))\"" } ?? ""
        let inbound = "direction=\"inbound\"\(own)"
        let promQL: String
        var key = ["service"]
        switch metric {
        case .sidecars:
            promQL = "count by (service) (sidecar_config_version{service!=\"\"\(own)})"
        case .requestsPerSecond:
            promQL = "sum by (service) (rate(sidecar_requests_total{\(inbound)}[\(window)]))"
        case .successesPerSecond:
            promQL = "sum by (service) (rate(sidecar_requests_total{\(inbound),code!~\"5..\"}[\(window)]))"
        case .latencyP50, .latencyP95, .latencyP99:
            promQL = "histogram_quantile(\(Self.quantile(metric)), sum by (service, le) "
                + "(rate(sidecar_request_duration_seconds_bucket{\(inbound)}[\(window)])))"
        case .retriesPerSecond:
            promQL = "sum by (peer) (rate(sidecar_retries_total{peer!=\"\"\(asPeer)}[\(window)]))"
            key = ["peer"]
        case .openBreakers:
            promQL = "sum by (peer) (sidecar_circuit_breaker_open{peer!=\"\"\(asPeer)})"
            key = ["peer"]
        case .ejectedEndpoints:
            // Each caller sees the same endpoints: the most any caller ejected, not the sum.
            promQL = "max by (peer) (sidecar_endpoints{state=\"ejected\"\(asPeer)})"
            key = ["peer"]
        }
        return MeshStatQuery(scope: .service, metric: metric, promQL: promQL, keyLabels: key)
    }

    /// An edge's row: the caller's sidecar (`service`) towards the callee (`peer`), outbound.
    /// The service filter is applied to the answers (an edge matches as caller or callee).
    public func edgeQuery(_ metric: MeshStatQuery.Metric) -> MeshStatQuery {
        let outbound = "direction=\"outbound\""
        let promQL: String
        switch metric {
        case .sidecars:
            // The caller's sidecars (scrape targets) that sent requests to the callee.
            promQL = "count by (service, peer) (count by (service, peer, instance) (sidecar_requests_total{\(outbound)}))"
        case .requestsPerSecond:
            promQL = "sum by (service, peer) (rate(sidecar_requests_total{\(outbound)}[\(window)]))"
        case .successesPerSecond:
            promQL = "sum by (service, peer) (rate(sidecar_requests_total{\(outbound),code!~\"5..\"}[\(window)]))"
        case .latencyP50, .latencyP95, .latencyP99:
            promQL = "histogram_quantile(\(Self.quantile(metric)), sum by (service, peer, le) "
                + "(rate(sidecar_request_duration_seconds_bucket{\(outbound)}[\(window)])))"
        case .retriesPerSecond:
            promQL = "sum by (service, peer) (rate(sidecar_retries_total[\(window)]))"
        case .openBreakers:
            promQL = "sum by (service, peer) (sidecar_circuit_breaker_open)"
        case .ejectedEndpoints:
            promQL = "sum by (service, peer) (sidecar_endpoints{state=\"ejected\"})"
        }
        return MeshStatQuery(scope: .edge, metric: metric, promQL: promQL, keyLabels: ["service", "peer"])
    }

    static func quantile(_ metric: MeshStatQuery.Metric) -> String {
        switch metric {
        case .latencyP50: "0.5"
        case .latencyP95: "0.95"
        default: "0.99"
        }
    }

    /// A PromQL string literal's body: backslash and double quote escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func isPrometheusDuration(_ text: String) -> Bool {
        var digits = 0
        var rest = Substring(text)
        while let first = rest.first, first.isASCII, first.isNumber {
            digits += 1
            rest = rest.dropFirst()
        }
        return digits > 0 && ["ms", "s", "m", "h", "d", "w", "y"].contains(String(rest))
    }
}

/// Why `stat` could not answer, in one line.
public struct MeshStatError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
