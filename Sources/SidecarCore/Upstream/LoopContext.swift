import NIOCore

/// What one event loop's proxy connections share: the route table snapshot, one `Cluster` per
/// destination, the `ConnectionPool`, rate limiters, the loop's randomness and clock, and the
/// open downstream connections (for drain).
///
/// One per loop, made at start; confined to it (not `Sendable`: other threads reach it only
/// through `NIOLoopBound`, by a task on its loop), so the hot path takes no lock and never
/// hops. Time is the loop's (`now`), so `EmbeddedEventLoop.advanceTime` drives every timer.
final class LoopContext {
    let eventLoop: EventLoop
    private(set) var table: RouteTable
    let metrics: SidecarMetrics
    /// For requests that never found a destination (`no-route`, `bad-request`).
    let unroutedMetrics: (outbound: RequestMetricsHandle, inbound: RequestMetricsHandle)
    let pool: ConnectionPool
    /// Multiplexed HTTP/2 upstream connections (peer sidecars over `h2`, the app over h2c).
    let http2Pool: HTTP2ConnectionPool
    /// `sidecar_grpc_responses_total` series this loop has counted on, resolved once each.
    private var grpcCounters: [GRPCSeries: Counter] = [:]
    /// Per-loop randomness (balancing, shares, jitter, request ids); see `LoopRandom`.
    var random = LoopRandom()
    /// This loop's access log lines, written in batches.
    let accessLogBuffer: AccessLogBuffer
    /// This loop's OTLP span export (nil without `tracing:`).
    let spans: SpanExporter?
    /// Limits shared by all loops (breaker counts, rate-limit buckets): exact per process.
    let shared: SharedLimits
    private var rateLimiters: LoopRateLimiters
    /// The gateway's rate limits keyed by client (see `GatewayRateLimiters`).
    lazy var gatewayLimiters = GatewayRateLimiters(shared: shared)
    /// The gateway's response caches, one store per rule shared by all loops.
    let responseCaches: LoopResponseCaches
    private var clusters: [String: Cluster] = [:]
    private var outlierTimerRunning = false
    /// Event loops sharing the per-loop limits (pool limits; each enforces its share).
    private(set) var loopCount = 1
    /// The other loops' contexts, told about outlier ejections (set once at start).
    private var siblings: [(eventLoop: EventLoop, context: NIOLoopBound<LoopContext>)] = []

    init(
        eventLoop: EventLoop, table: RouteTable, connector: any UpstreamConnector,
        metrics: SidecarMetrics = SidecarMetrics(), shared: SharedLimits = SharedLimits(), spanExport: SpanExport? = nil,
        responseCaches: GatewayResponseCaches = GatewayResponseCaches()
    ) {
        self.responseCaches = LoopResponseCaches(shared: responseCaches, metrics: metrics)
        self.eventLoop = eventLoop
        self.table = table
        self.metrics = metrics
        self.shared = shared
        self.rateLimiters = LoopRateLimiters(shared: shared)
        self.unroutedMetrics = (
            metrics.requests.handle(direction: .outbound, peer: "unknown"),
            metrics.requests.handle(direction: .inbound, peer: "unknown")
        )
        self.pool = ConnectionPool(eventLoop: eventLoop, connector: connector, metrics: metrics, trustDomain: table.trustDomain)
        self.http2Pool = HTTP2ConnectionPool(eventLoop: eventLoop, connector: connector, trustDomain: table.trustDomain)
        self.accessLogBuffer = AccessLogBuffer(eventLoop: eventLoop)
        self.spans = spanExport.map { SpanExporter(eventLoop: eventLoop, export: $0) }
    }

    /// Joins this loop to the others of its group (at start, before any connection).
    func join(_ siblings: [(eventLoop: EventLoop, context: NIOLoopBound<LoopContext>)], loopCount: Int) {
        self.siblings = siblings
        self.loopCount = loopCount
    }

    var now: NIODeadline { eventLoop.now }

    /// Installs a new snapshot; requests already routed keep what they chose. Clusters of
    /// services that left are dropped; the others keep their state under the new policy.
    func replaceTable(_ table: RouteTable) {
        eventLoop.assertInEventLoop()
        self.table = table
        pool.trustDomain = table.trustDomain
        http2Pool.trustDomain = table.trustDomain
        rateLimiters.tableReplaced()
        lastCluster = nil
        for (service, cluster) in clusters {
            guard let destination = table.destinations[service] else {
                clusters[service] = nil
                continue
            }
            let actions = cluster.update(destination)
            apply(actions.filter { if case .uneject = $0 { return true } else { return false } }, cluster: cluster)
        }
    }

    // MARK: Clusters

    /// The cluster of `destination`, made on its first request.
    func cluster(_ destination: RouteTable.Destination) -> Cluster {
        if let last = lastCluster, last.destination === destination { return last.cluster }
        let cluster: Cluster
        if let existing = clusters[destination.service] {
            cluster = existing
        } else {
            cluster = Cluster(destination, loopCount: loopCount, shared: shared, metrics: metrics, now: now)
            clusters[destination.service] = cluster
            startOutlierTimer()
        }
        lastCluster = (destination, cluster)
        return cluster
    }

    /// The last destination's cluster: a request asks for it several times (admission, pick,
    /// pool, outcome, record), and a loop's requests mostly go to one destination. Dropped
    /// with the table it came from.
    private var lastCluster: (destination: RouteTable.Destination, cluster: Cluster)?

    /// The cluster of `service` if a request made it (pool limits apply only then).
    func existingCluster(_ service: String) -> Cluster? {
        if let last = lastCluster, last.destination.service == service { return last.cluster }
        return clusters[service]
    }

    /// Requests waiting for a connection on this loop (tests, `/clusters`).
    var pendingCount: Int { clusters.values.reduce(0) { $0 + $1.waiters.count } }

    /// Picks an endpoint of `destination` for `rule` (see `Cluster.pick`).
    func pickEndpoint(
        _ destination: RouteTable.Destination, rule: RouteRule, excluding: TriedEndpoints = []
    ) -> RouteTable.Endpoint? {
        cluster(destination).pick(destination, rule: rule, excluding: excluding, now: now, random: &random)
    }

    /// True with probability `percent`/100 (fault injection, mirroring).
    func chance(_ percent: Double) -> Bool {
        percent >= 100 || (percent > 0 && Double.random(in: 0..<100, using: &random) < percent)
    }

    // MARK: Rate limits

    /// The route rule's own rate limit (outbound), exact across loops.
    func takeRuleToken(
        service: String, ruleIndex: Int, limit: RateLimit, now: NIODeadline, peek: Bool = false
    ) -> TokenBucket.Decision {
        rateLimiters.takeRuleToken(service: service, ruleIndex: ruleIndex, limit: limit, now: now, peek: peek)
    }

    /// The local service's TrafficPolicy rate limit, enforced on inbound (optionally per
    /// caller), exact across loops.
    func takeInboundToken(caller: String, now: NIODeadline) -> TokenBucket.Decision {
        rateLimiters.takeInboundToken(limit: table.localPolicy?.rateLimit, caller: caller, now: now)
    }

    // MARK: Outlier detection (per cluster; ejections shared with the other loops)

    /// Records an upstream outcome for passive outlier detection; ejections move the metrics.
    func recordOutcome(_ outcome: OutlierDetectorStateMachine<HostPort>.Outcome, service: String, address: HostPort) {
        guard let cluster = existingCluster(service),
            let action = cluster.resilience.outliers.record(outcome, for: address, now: now)
        else { return }
        apply([action], cluster: cluster)
    }

    /// How many endpoints of `service` outlier detection ejects now (access log causes).
    func ejectedEndpoints(_ service: String) -> Int { existingCluster(service)?.resilience.outliers.ejectedCount ?? 0 }

    /// Ejections found here count in `sidecar_outlier_ejections_total` and are sent to the
    /// other loops (rare: no hop per request); the ledger keeps `sidecar_endpoints` per endpoint.
    private func apply(
        _ actions: [OutlierDetectorStateMachine<HostPort>.Action], cluster: Cluster, detectedHere: Bool = true
    ) {
        let service = cluster.service
        for action in actions {
            switch action {
            case .eject(let endpoint, let until):
                shared.ejections.record(service: service, endpoint: endpoint, ejected: true, metrics: metrics)
                guard detectedHere else { continue }
                metrics.peer(service).outlierEjections.increment()
                for sibling in siblings {
                    let context = sibling.context
                    sibling.eventLoop.execute { context.value.adoptEjection(service: service, endpoint: endpoint, until: until) }
                }
            case .uneject(let endpoint):
                shared.ejections.record(service: service, endpoint: endpoint, ejected: false, metrics: metrics)
            }
        }
    }

    /// Another loop ejected `endpoint` of `service`: stop picking it here too.
    private func adoptEjection(service: String, endpoint: HostPort, until: NIODeadline) {
        guard let destination = table.destinations[service] else { return }
        let cluster = cluster(destination)
        guard let action = cluster.resilience.outliers.adoptEjection(of: endpoint, until: until) else { return }
        apply([action], cluster: cluster, detectedHere: false)
    }

    /// Once a second while any cluster exists: un-ejections whose time is up, interval ticks.
    private func startOutlierTimer() {
        guard !outlierTimerRunning else { return }
        outlierTimerRunning = true
        scheduleOutlierTick()
    }

    private func scheduleOutlierTick() {
        eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
            let now = self.now
            for cluster in self.clusters.values {
                self.apply(cluster.resilience.tickOutliers(now: now), cluster: cluster)
            }
            self.scheduleOutlierTick()
        }
    }

    // MARK: Downstream connections (for drain)

    private var connections: [ObjectIdentifier: any DownstreamConnection] = [:]
    var openConnections: Int { connections.count }
    var draining: Bool { pool.draining }

    func connectionOpened(_ connection: any DownstreamConnection) { connections[ObjectIdentifier(connection)] = connection }
    func connectionClosed(_ connection: any DownstreamConnection) { connections[ObjectIdentifier(connection)] = nil }

    /// Stops reusing connections and asks every downstream connection to finish and close.
    func beginDrain() {
        eventLoop.assertInEventLoop()
        pool.draining = true
        pool.closeIdle()
        http2Pool.closeAll()
        for connection in connections.values { connection.beginDrain() }
    }

    // MARK: gRPC

    struct GRPCSeries: Hashable {
        let direction: TrafficDirection
        let peer: String
        let status: GRPCStatusCode
    }

    /// `sidecar_grpc_responses_total{direction,peer,grpc_status}`: a loop-local lookup after
    /// the first call for a series (the family's lock only then).
    func grpcResponses(_ direction: TrafficDirection, peer: String, status: GRPCStatusCode) -> Counter {
        let series = GRPCSeries(direction: direction, peer: peer, status: status)
        if let counter = grpcCounters[series] { return counter }
        let counter = metrics.grpcResponses(direction, peer: peer, status: status)
        grpcCounters[series] = counter
        return counter
    }
}
