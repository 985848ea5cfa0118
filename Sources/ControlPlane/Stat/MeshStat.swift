/// `control-plane stat`'s answer: golden metrics per service and per caller → callee edge
/// (like `linkerd viz stat`), assembled from the instant queries of `MeshStatQueries`.
///
/// A service's row is what its own sidecars saw inbound (rate, success, latency) and what its
/// callers saw towards it (retries, open breakers, ejected endpoints). An edge's row is what
/// the caller's sidecar saw outbound. Missing numbers (no requests in the window) are nil,
/// shown as `-`.
public struct MeshStat: Sendable, Equatable, Codable {
    /// One row of golden metrics.
    public struct Golden: Sendable, Equatable, Codable {
        /// Sidecars scraped (service row) or the caller's sidecars on this edge (edge row).
        public var sidecars: Int?
        public var requestsPerSecond: Double
        /// Share of answers that are not 5xx, 0–1; nil without requests.
        public var successRate: Double?
        public var latencyP50Ms: Double?
        public var latencyP95Ms: Double?
        public var latencyP99Ms: Double?
        public var retriesPerSecond: Double
        public var openBreakers: Int
        public var ejectedEndpoints: Int

        public init(
            sidecars: Int? = nil, requestsPerSecond: Double = 0, successRate: Double? = nil, latencyP50Ms: Double? = nil,
            latencyP95Ms: Double? = nil, latencyP99Ms: Double? = nil, retriesPerSecond: Double = 0, openBreakers: Int = 0,
            ejectedEndpoints: Int = 0
        ) {
            self.sidecars = sidecars
            self.requestsPerSecond = requestsPerSecond
            self.successRate = successRate
            self.latencyP50Ms = latencyP50Ms
            self.latencyP95Ms = latencyP95Ms
            self.latencyP99Ms = latencyP99Ms
            self.retriesPerSecond = retriesPerSecond
            self.openBreakers = openBreakers
            self.ejectedEndpoints = ejectedEndpoints
        }
    }

    public struct ServiceRow: Sendable, Equatable, Codable {
        public var service: String
        public var stats: Golden
    }

    public struct EdgeRow: Sendable, Equatable, Codable {
        public var from: String
        public var to: String
        public var stats: Golden
    }

    /// The Prometheus that answered, and the rate window.
    public var prometheus: String
    public var window: String
    public var services: [ServiceRow]
    public var edges: [EdgeRow]

    /// Rows from each query's answer, sorted by name; with a service filter, only its row
    /// and the edges into or out of it. A row needs traffic, a sidecar, or a non-zero number:
    /// every sidecar exports breaker and endpoint gauges for each service it knows, and those
    /// zeros alone make no edge.
    public init(prometheus: String, queries: MeshStatQueries, answers: [MeshStatQuery: PrometheusVector]) {
        self.prometheus = prometheus
        window = queries.window
        var services: [String: Golden] = [:]
        var edges: [EdgeKey: Golden] = [:]
        for (query, vector) in answers {
            let defining = query.metric == .sidecars || query.metric == .requestsPerSecond
            for sample in vector.samples where defining || (sample.value.isFinite && sample.value != 0) {
                let key = query.keyLabels.map { sample.labels[$0] ?? "" }
                guard !key.contains(where: \.isEmpty) else { continue }
                switch query.scope {
                case .service:
                    if let only = queries.service, key[0] != only { continue }
                    Self.record(query.metric, sample.value, into: &services[key[0], default: Golden()])
                case .edge:
                    if let only = queries.service, key[0] != only, key[1] != only { continue }
                    Self.record(query.metric, sample.value, into: &edges[EdgeKey(from: key[0], to: key[1]), default: Golden()])
                }
            }
        }
        self.services = services.map { ServiceRow(service: $0.key, stats: $0.value.finished) }.sorted { $0.service < $1.service }
        self.edges = edges.map { EdgeRow(from: $0.key.from, to: $0.key.to, stats: $0.value.finished) }
            .sorted { ($0.from, $0.to) < ($1.from, $1.to) }
    }

    public init(prometheus: String, window: String, services: [ServiceRow], edges: [EdgeRow]) {
        self.prometheus = prometheus
        self.window = window
        self.services = services
        self.edges = edges
    }

    private struct EdgeKey: Hashable {
        var from: String
        var to: String
    }

    /// While assembling, `successRate` holds successes per second; `finished` divides.
    private static func record(_ metric: MeshStatQuery.Metric, _ value: Double, into row: inout Golden) {
        let number: Double? = value.isFinite ? value : nil
        switch metric {
        case .sidecars: row.sidecars = number.map { Int($0.rounded()) }
        case .requestsPerSecond: row.requestsPerSecond = number ?? 0
        case .successesPerSecond: row.successRate = number ?? 0
        case .latencyP50: row.latencyP50Ms = number.map { $0 * 1000 }
        case .latencyP95: row.latencyP95Ms = number.map { $0 * 1000 }
        case .latencyP99: row.latencyP99Ms = number.map { $0 * 1000 }
        case .retriesPerSecond: row.retriesPerSecond = number ?? 0
        case .openBreakers: row.openBreakers = Int((number ?? 0).rounded())
        case .ejectedEndpoints: row.ejectedEndpoints = Int((number ?? 0).rounded())
        }
    }
}

extension MeshStat.Golden {
    fileprivate var finished: Self {
        var row = self
        row.successRate = requestsPerSecond > 0 ? min(1, (successRate ?? 0) / requestsPerSecond) : nil
        return row
    }
}
