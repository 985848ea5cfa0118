/// What the admin server shows, supplied by the sidecar as closures so the server knows
/// nothing of the data plane. Each is called on an event loop per request: keep them quick
/// and non-blocking (read an atomic snapshot, encode it).
public struct AdminProviders: Sendable {
    /// Written on `/metrics`.
    public var metrics: MetricsRegistry
    /// Answers `/ready`.
    public var readiness: @Sendable () -> Readiness
    /// Where the configuration in use came from (`/ready`'s `source`).
    public var source: @Sendable () -> ConfigSource
    /// The JSON document served on `/config` (the configuration snapshot in use).
    public var config: @Sendable () -> String
    /// The JSON document served on `/clusters` (clusters, endpoints and their state).
    public var clusters: @Sendable () -> String
    /// `/explain?authority=…&path=…&method=…`: the status and JSON document for the request URI.
    public var explain: @Sendable (String) -> (ok: Bool, json: String)

    public init(
        metrics: MetricsRegistry,
        readiness: @escaping @Sendable () -> Readiness,
        source: @escaping @Sendable () -> ConfigSource = { .file },
        config: @escaping @Sendable () -> String = { "{}" },
        clusters: @escaping @Sendable () -> String = { "{}" },
        explain: @escaping @Sendable (String) -> (ok: Bool, json: String) = { _ in (false, #"{"error":"not available"}"#) }
    ) {
        self.metrics = metrics
        self.readiness = readiness
        self.source = source
        self.config = config
        self.clusters = clusters
        self.explain = explain
    }
}
