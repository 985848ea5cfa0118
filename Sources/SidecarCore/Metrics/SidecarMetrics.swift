/// Every metric the sidecar exposes on its admin `/metrics`, declared here and nowhere else,
/// with its HELP text, type and labels (DESIGN.md, "Metrics").
///
/// Built once per process and shared. The data plane resolves its handles when it builds a
/// route table or cluster (`requests.handle(direction:peer:)`, `peer(_:)`, `retries(peer:reason:)`)
/// and then only touches atomics. Label values are bounded words: service names, status codes,
/// reasons, states; never a path or an address.
public final class SidecarMetrics: Sendable {
    /// `sidecar_requests_total`, `sidecar_request_duration_seconds`, `sidecar_bytes_total`.
    public let requests = RequestMetrics(
        requests: MetricDescriptor(
            "sidecar_requests_total", .counter, labels: ["direction", "peer", "code"],
            help: "Requests finished, by direction, peer service and response status code."),
        duration: MetricDescriptor(
            "sidecar_request_duration_seconds", .histogram, labels: ["direction", "peer"],
            help: "Time from the first request byte to the last response byte, in seconds."),
        bytes: MetricDescriptor(
            "sidecar_bytes_total", .counter, labels: ["direction", "peer", "flow"],
            help: "Bytes proxied; flow is request (downstream to upstream) or response (upstream to downstream)."))

    let retries = CounterFamily(MetricDescriptor(
        "sidecar_retries_total", .counter, labels: ["peer", "reason"],
        help: "Retries attempted to a peer service, by the condition that triggered them."))
    let retryBudgetExhausted = CounterFamily(MetricDescriptor(
        "sidecar_retry_budget_exhausted_total", .counter, labels: ["peer"],
        help: "Retries not attempted because the peer's retry budget was spent."))
    let mirrorRequests = CounterFamily(MetricDescriptor(
        "sidecar_mirror_requests_total", .counter, labels: ["peer", "result"],
        help: "Fire-and-forget copies of requests to a route's mirror subset, by result (completed, failed, skipped)."))
    let grpcResponses = CounterFamily(MetricDescriptor(
        "sidecar_grpc_responses_total", .counter, labels: ["direction", "peer", "grpc_status"],
        help: "gRPC calls finished, by direction, peer service and the grpc-status the caller got."))
    let circuitBreakerOpen = GaugeFamily(MetricDescriptor(
        "sidecar_circuit_breaker_open", .gauge, labels: ["peer"],
        help: "1 while a circuit breaker limit for the peer is overflowing, else 0."))
    let circuitBreakerRejections = CounterFamily(MetricDescriptor(
        "sidecar_circuit_breaker_rejections_total", .counter, labels: ["peer"],
        help: "Requests refused with circuit-open because a breaker limit overflowed."))
    let outlierEjections = CounterFamily(MetricDescriptor(
        "sidecar_outlier_ejections_total", .counter, labels: ["peer"],
        help: "Endpoints of the peer ejected by outlier detection."))
    let endpoints = GaugeFamily(MetricDescriptor(
        "sidecar_endpoints", .gauge, labels: ["peer", "state"],
        help: "Endpoints of the peer service by state (healthy, unhealthy, ejected)."))
    let connectionsOpen = GaugeFamily(MetricDescriptor(
        "sidecar_connections_open", .gauge, labels: ["direction"],
        help: "Downstream connections currently open, by direction."))
    let tlsHandshakeErrors = CounterFamily(MetricDescriptor(
        "sidecar_tls_handshake_errors_total", .counter, labels: ["direction", "reason"],
        help: "TLS handshakes that failed, by direction and reason."))
    let authzDenied = CounterFamily(MetricDescriptor(
        "sidecar_authz_denied_total", .counter, labels: ["peer"],
        help: "Inbound requests refused by authorization policy, by calling service."))
    let gatewayAuthFailures = CounterFamily(MetricDescriptor(
        "sidecar_gateway_auth_failures_total", .counter, labels: ["policy", "reason"],
        help: "Gateway requests refused by an AuthenticationPolicy, by policy and reason."))
    let cacheRequests = CounterFamily(MetricDescriptor(
        "sidecar_cache_requests_total", .counter, labels: ["route", "result"],
        help: "GET/HEAD requests on gateway rules with a response cache, by GatewayRoute name and result (hit, miss, coalesced, bypass)."))
    let certExpiry = GaugeFamily(MetricDescriptor(
        "sidecar_cert_expiry_timestamp_seconds", .gauge,
        help: "Expiry of the workload certificate in use, as a Unix timestamp in seconds."))
    let configVersion = GaugeFamily(MetricDescriptor(
        "sidecar_config_version", .gauge,
        help: "Version of the configuration snapshot in use."))
    let configRejected = CounterFamily(MetricDescriptor(
        "sidecar_config_rejected_total", .counter,
        help: "Configuration snapshots refused whole because this sidecar cannot apply them (the running one stays)."))
    let interceptedConnections = CounterFamily(MetricDescriptor(
        "sidecar_intercepted_connections_total", .counter, labels: ["outcome"],
        help: "Connections redirected to the outbound port (outbound.transparent), by where they went: mesh-http, mesh-tcp, passthrough (outside the mesh), refused (registry-only)."))
    let controlPlaneConnected = GaugeFamily(MetricDescriptor(
        "sidecar_control_plane_connected", .gauge,
        help: "1 while connected to the control plane, else 0."))
    let spansExportedFamily = CounterFamily(MetricDescriptor(
        "sidecar_spans_exported_total", .counter,
        help: "Spans the OTLP collector accepted (tracing.otlpEndpoint)."))
    let spansDroppedFamily = CounterFamily(MetricDescriptor(
        "sidecar_spans_dropped_total", .counter, labels: ["reason"],
        help: "Spans not exported, by reason: buffer-full (the collector fell behind), export-failed (unreachable or refused)."))

    /// Why a span was not exported.
    public enum SpanDropReason: String, Sendable, CaseIterable {
        case bufferFull = "buffer-full"
        case exportFailed = "export-failed"
    }

    /// Pre-made so the handshake path needs no lock: [direction][reason].
    private let tlsErrorCounters: [[TLSFailureReason: Counter]]
    private let connectionGauges: [Gauge]
    private let interceptCounters: [InterceptOutcome: Counter]

    /// `sidecar_cert_expiry_timestamp_seconds`.
    public let certificateExpiry: Gauge
    /// `sidecar_config_version`.
    public let configurationVersion: Gauge
    /// `sidecar_control_plane_connected` (set with `set(true)` / `set(false)`); exposed in
    /// dynamic mode only.
    public let controlPlaneConnection: Gauge
    /// `sidecar_config_rejected_total`.
    public let configurationRejected: Counter
    /// `sidecar_spans_exported_total`.
    public let spansExported: Counter
    private let spansDroppedCounters: [SpanDropReason: Counter]

    /// All families, for the admin server.
    public let registry: MetricsRegistry

    /// Which families `/metrics` carries: a static sidecar has no control plane, so it exports
    /// no `sidecar_control_plane_connected` (a constant 0 would read as "disconnected" and fire
    /// the disconnection alert).
    public enum Mode: Sendable {
        case `static`
        case dynamic
    }

    /// - Parameter mode: `.dynamic` (the default) exposes every family, `.static` all but
    ///   `sidecar_control_plane_connected`.
    public init(mode: Mode = .dynamic) {
        let tlsHandshakeErrors = tlsHandshakeErrors, connectionsOpen = connectionsOpen
        tlsErrorCounters = TrafficDirection.allCases.map { direction in
            Dictionary(uniqueKeysWithValues: TLSFailureReason.allCases.map {
                ($0, tlsHandshakeErrors.counter(direction.rawValue, $0.rawValue))
            })
        }
        connectionGauges = TrafficDirection.allCases.map { connectionsOpen.gauge($0.rawValue) }
        let interceptedConnections = interceptedConnections
        interceptCounters = Dictionary(uniqueKeysWithValues: InterceptOutcome.allCases.map {
            ($0, interceptedConnections.counter($0.rawValue))
        })
        certificateExpiry = certExpiry.gauge()
        configurationVersion = configVersion.gauge()
        controlPlaneConnection = controlPlaneConnected.gauge()
        configurationRejected = configRejected.counter()
        spansExported = spansExportedFamily.counter()
        let spansDroppedFamily = spansDroppedFamily
        spansDroppedCounters = Dictionary(uniqueKeysWithValues: SpanDropReason.allCases.map {
            ($0, spansDroppedFamily.counter($0.rawValue))
        })
        var families: [any MetricFamily] = requests.families + [
            retries, retryBudgetExhausted, grpcResponses, mirrorRequests, circuitBreakerOpen, circuitBreakerRejections, outlierEjections,
            endpoints, connectionsOpen, tlsHandshakeErrors, authzDenied, gatewayAuthFailures, cacheRequests, certExpiry, configVersion, configRejected,
            spansExportedFamily, spansDroppedFamily, interceptedConnections,
        ]
        if mode == .dynamic { families.append(controlPlaneConnected) }
        registry = MetricsRegistry(families: families)
    }

    /// The upstream series of `peer` (breaker, outlier, budget, endpoints). Takes locks:
    /// resolve when the cluster is built.
    public func peer(_ peer: String) -> PeerMetrics { PeerMetrics(peer: peer, metrics: self) }

    /// `sidecar_retries_total{peer,reason}`; `reason` is a retry condition word such as
    /// `RetryCondition.description` (`connect-failure`, `reset`, `503`) or `per-try-timeout`.
    public func retries(peer: String, reason: String) -> Counter { retries.counter(peer, reason) }

    /// `sidecar_mirror_requests_total{peer,result}` (takes a lock: once per mirrored request).
    func mirrorRequests(peer: String, result: MirrorExchange.Outcome) -> Counter {
        mirrorRequests.counter(peer, result.rawValue)
    }

    /// `sidecar_grpc_responses_total{direction,peer,grpc_status}` (takes a lock: the loop caches it).
    func grpcResponses(_ direction: TrafficDirection, peer: String, status: GRPCStatusCode) -> Counter {
        grpcResponses.counter(direction.rawValue, peer, status.label)
    }

    /// `sidecar_authz_denied_total{peer}` for a calling service (from its verified certificate).
    public func authzDenied(caller: String) -> Counter { authzDenied.counter(caller) }

    /// `sidecar_spans_dropped_total{reason}`; every reason exists from the start.
    public func spansDropped(_ reason: SpanDropReason) -> Counter { spansDroppedCounters[reason]! }

    /// `sidecar_gateway_auth_failures_total{policy,reason}` (takes a lock: once per refusal).
    func gatewayAuthFailures(policy: String, reason: GatewayAuthenticator.Reason) -> Counter {
        gatewayAuthFailures.counter(policy, reason.rawValue)
    }

    /// `sidecar_cache_requests_total{route,result}` (takes a lock: resolved once per rule and loop).
    func cacheRequests(route: String, result: CacheResult) -> Counter {
        cacheRequests.counter(route, result.rawValue)
    }

    /// `sidecar_connections_open{direction}`; no lookup.
    public func connectionsOpen(_ direction: TrafficDirection) -> Gauge { connectionGauges[direction.index] }

    /// `sidecar_intercepted_connections_total{outcome}`; every outcome exists from the start.
    func interceptedConnections(_ outcome: InterceptOutcome) -> Counter { interceptCounters[outcome]! }

    /// `sidecar_tls_handshake_errors_total{direction,reason}`; every pair exists from the start.
    public func tlsHandshakeErrors(_ direction: TrafficDirection, _ reason: TLSFailureReason) -> Counter {
        tlsErrorCounters[direction.index][reason]!
    }
}
