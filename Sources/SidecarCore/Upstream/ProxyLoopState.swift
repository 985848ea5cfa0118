import NIOCore

/// Everything one event loop's proxy handlers share: the current route table, the pool of
/// idle upstream connections, in-flight counts for least-request balancing. Confined to its
/// event loop (one per loop, made at start), so the hot path takes no lock and never hops:
/// upstream connections are opened on the same loop as the downstream connection.
final class ProxyLoopState: @unchecked Sendable {
    struct PoolKey: Hashable {
        let address: HostPort
        /// The destination service whose identity the peer must present (nil: plain app).
        let service: String?
        /// An L4 tunnel (ALPN `mesh-tcp`): never pooled, never reused.
        var tunnel = false
    }

    let eventLoop: EventLoop
    private(set) var table: RouteTable
    /// Opens upstream connections (TCP + mTLS in production; an in-memory channel in tests).
    let connector: any UpstreamConnector
    let metrics: SidecarMetrics
    /// For requests that never found a destination (`no-route`, `bad-request`).
    let unroutedMetrics: (outbound: RequestMetricsHandle, inbound: RequestMetricsHandle)
    var draining = false
    private var idle: [PoolKey: [UpstreamHandler]] = [:]
    private var inFlight: [HostPort: Int] = [:]
    /// Each destination's balancer on this loop, rebuilt when its policy's kind changes.
    private var balancers: [String: (kind: LoadBalancerKind, balancer: any LoadBalancer)] = [:]
    /// Per-loop randomness (balancing, shares, jitter, request ids); see `LoopRandom`.
    var random = LoopRandom()
    let maxIdlePerEndpoint = 64
    /// A pooled upstream connection unused this long is closed.
    var upstreamIdleTimeout: TimeAmount = .hours(1)

    init(
        eventLoop: EventLoop, table: RouteTable, connector: any UpstreamConnector,
        metrics: SidecarMetrics = SidecarMetrics(), shared: SharedLimits = SharedLimits()
    ) {
        self.eventLoop = eventLoop
        self.shared = shared
        self.rateLimiters = LoopRateLimiters(shared: shared)
        self.metrics = metrics
        self.unroutedMetrics = (
            metrics.requests.handle(direction: .outbound, peer: "unknown"),
            metrics.requests.handle(direction: .inbound, peer: "unknown")
        )
        self.table = table
        self.connector = connector
    }

    /// Installs a new snapshot; requests already routed keep what they chose.
    func replaceTable(_ table: RouteTable) {
        eventLoop.assertInEventLoop()
        self.table = table
        rateLimiters.tableReplaced()
        balancers = balancers.filter { table.destinations[$0.key] != nil }
        for service in Array(resilience.keys) {
            guard let destination = table.destinations[service] else {
                resilience[service] = nil
                continue
            }
            let actions = resilience[service]!.update(
                policy: destination.policy, endpoints: destination.endpoints.map(\.address))
            apply(actions.filter { if case .uneject = $0 { return true } else { return false } }, service: service)
        }
    }

    // MARK: Resilience (breakers, outlier detection, rate limits), per destination, on this loop

    private var resilience: [String: DestinationResilience] = [:]
    /// Limits shared by all loops (breaker counts, rate-limit buckets): exact per process.
    let shared: SharedLimits
    private var rateLimiters: LoopRateLimiters
    private var outlierTimer: RepeatedTask?
    /// Event loops sharing the per-loop limits (pool limits; each enforces its share).
    var loopCount = 1
    /// The other loops' states, told about outlier ejections (set once at start).
    var siblings: [ProxyLoopState] = []

    /// The resilience state of `destination`, made on first use.
    func withResilience<R>(_ destination: RouteTable.Destination, _ body: (inout DestinationResilience) -> R) -> R {
        // `index(forKey:)`, not `resilience[…] == nil`: reading the optional would copy the state.
        if resilience.index(forKey: destination.service) == nil {
            resilience[destination.service] = DestinationResilience(
                policy: destination.policy, endpoints: destination.endpoints.map(\.address), loopCount: loopCount,
                breakerCounters: shared.breakerCounters(for: destination.service),
                retryWindow: shared.retryWindow(for: destination.service), now: eventLoop.now)
            startOutlierTimer()
        }
        return body(&resilience[destination.service]!)
    }

    /// Asks the request's retry state machine whether `failure` is retried, against the
    /// destination's retry budget; counts `sidecar_retries_total` / budget exhaustion.
    ///
    /// A retry also needs one of the breaker's `maxRetries` slots, held from the exchange's
    /// first retry until it ends (`holdsRetrySlot`); when none is free the request gives up
    /// with `max-retries` and the breaker counts a rejection.
    func decideRetry(
        _ retry: inout RetryStateMachine, after failure: RetryStateMachine.Failure, from address: HostPort?,
        destination: RouteTable.Destination, holdsRetrySlot: inout Bool
    ) -> RetryStateMachine.Action {
        let now = eventLoop.now
        var action = withResilience(destination) { state in
            retry.decide(after: failure, from: address, now: now, budget: &state.retryBudget, using: &random)
        }
        if case .retry = action, !holdsRetrySlot {
            let admission = withResilience(destination) { $0.breaker.tryAcquireRetry() }
            publishBreakerState(service: destination.service)
            if case .rejected = admission {
                metrics.peer(destination.service).circuitBreakerRejections.increment()
                action = .giveUp(.maxRetries)
            } else {
                holdsRetrySlot = true
            }
        }
        switch action {
        case .retry:
            metrics.retries(peer: destination.service, reason: failure.reason).increment()
        case .budgetExhausted:
            metrics.peer(destination.service).retryBudgetExhausted.increment()
        case .giveUp:
            break
        }
        return action
    }

    /// How many endpoints of `service` outlier detection ejects now (access log causes).
    func ejectedEndpoints(_ service: String) -> Int { resilience[service]?.outliers.ejectedCount ?? 0 }

    func retryBudgetRequestStarted(_ destination: RouteTable.Destination) {
        let now = eventLoop.now
        withResilience(destination) { $0.retryBudget.requestStarted(now: now) }
    }

    /// The route rule's own rate limit (outbound), exact across loops.
    func takeRuleToken(service: String, ruleIndex: Int, limit: RateLimit, now: NIODeadline) -> TokenBucket.Decision {
        rateLimiters.takeRuleToken(service: service, ruleIndex: ruleIndex, limit: limit, now: now)
    }

    /// The local service's TrafficPolicy rate limit, enforced on inbound (optionally per
    /// caller), exact across loops.
    func takeInboundToken(caller: String, now: NIODeadline) -> TokenBucket.Decision {
        rateLimiters.takeInboundToken(limit: table.localPolicy?.rateLimit, caller: caller, now: now)
    }

    /// Records an upstream outcome for passive outlier detection; ejections move the metrics.
    func recordOutcome(_ outcome: OutlierDetectorStateMachine<HostPort>.Outcome, service: String, address: HostPort) {
        guard let action = resilience[service]?.outliers.record(outcome, for: address, now: eventLoop.now) else { return }
        apply([action], service: service)
    }

    /// Publishes the breaker's open/closed change, if any, to `sidecar_circuit_breaker_open`.
    /// The gauge is shared: the request/retry limits (process-wide) and each loop's pool
    /// limits add 1 while they overflow, so it reads > 0 while anything is open.
    func publishBreakerState(service: String) {
        // Mutating accesses (in place); a read of `resilience[service]` would copy the state.
        guard let changes = resilience[service]?.takeOpenChanges() else { return }
        if let open = changes.breaker { moveBreakerGauge(service, open) }
        if let open = changes.pool { moveBreakerGauge(service, open) }
    }

    private func moveBreakerGauge(_ service: String, _ open: Bool) {
        let gauge = metrics.peer(service).circuitBreakerOpen
        open ? gauge.increment() : gauge.decrement()
    }

    /// Ejections found here count in `sidecar_outlier_ejections_total` and are sent to the
    /// other loops (rare: no hop per request); the ledger keeps `sidecar_endpoints` per endpoint.
    private func apply(
        _ actions: [OutlierDetectorStateMachine<HostPort>.Action], service: String, detectedHere: Bool = true
    ) {
        for action in actions {
            switch action {
            case .eject(let endpoint, let until):
                shared.ejections.record(service: service, endpoint: endpoint, ejected: true, metrics: metrics)
                guard detectedHere else { continue }
                metrics.peer(service).outlierEjections.increment()
                for sibling in siblings {
                    sibling.eventLoop.execute { sibling.adoptEjection(service: service, endpoint: endpoint, until: until) }
                }
            case .uneject(let endpoint):
                shared.ejections.record(service: service, endpoint: endpoint, ejected: false, metrics: metrics)
            }
        }
    }

    /// Another loop ejected `endpoint` of `service`: stop picking it here too.
    private func adoptEjection(service: String, endpoint: HostPort, until: NIODeadline) {
        guard let destination = table.destinations[service],
            let action = withResilience(destination, { $0.outliers.adoptEjection(of: endpoint, until: until) })
        else { return }
        apply([action], service: service, detectedHere: false)
    }

    private func startOutlierTimer() {
        guard outlierTimer == nil else { return }
        outlierTimer = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] _ in
            guard let self else { return }
            let now = eventLoop.now
            for service in self.resilience.keys {
                let actions = self.resilience[service]!.tickOutliers(now: now)
                self.apply(actions, service: service)
            }
        }
    }

    // MARK: Downstream connections (for drain)

    private var connections: [ObjectIdentifier: any DownstreamConnection] = [:]
    var openConnections: Int { connections.count }

    func connectionOpened(_ connection: any DownstreamConnection) { connections[ObjectIdentifier(connection)] = connection }
    func connectionClosed(_ connection: any DownstreamConnection) { connections[ObjectIdentifier(connection)] = nil }

    /// Stops reusing connections and asks every downstream connection to finish and close.
    func beginDrain() {
        eventLoop.assertInEventLoop()
        draining = true
        closeIdle()
        for handler in connections.values { handler.beginDrain() }
    }

    // MARK: Load balancing

    /// Picks an endpoint of `destination` for `rule`: a backend subset by weight, then the
    /// destination's `LoadBalancer` among its usable endpoints.
    func pickEndpoint(
        _ destination: RouteTable.Destination, rule: RouteRule, excluding: Set<HostPort> = []
    ) -> RouteTable.Endpoint? {
        let subset = pickSubset(rule.backends)
        let outliers = resilience[destination.service]?.outliersWhileEjecting()
        let usable = destination.endpoints.filter { $0.matches(subset) && !(outliers?.shouldSkip($0.address) ?? false) }
        var candidates = usable.filter { !excluding.contains($0.address) }
        if candidates.isEmpty { candidates = usable }
        guard !candidates.isEmpty else { return nil }
        if candidates.count == 1 { return candidates[0] }
        let kind = destination.policy.loadBalancer
        if balancers.index(forKey: destination.service) == nil || balancers[destination.service]!.kind != kind {
            balancers[destination.service] = (kind, kind.makeBalancer())
        }
        let inFlight = self.inFlight
        return balancers[destination.service]!.balancer.pick(
            candidates, inFlight: { inFlight[$0, default: 0] }, now: eventLoop.now, random: &random)
    }

    /// A try's response head came `latency` after its request went to `address` (latency-aware balancing).
    func observeLatency(_ latency: TimeAmount, service: String, address: HostPort) {
        guard balancers.index(forKey: service) != nil else { return }
        balancers[service]!.balancer.observe(latency: latency, of: address, now: eventLoop.now)
    }

    private func pickSubset(_ backends: [WeightedBackend]) -> [String: String] {
        guard backends.count > 1 else { return backends.first?.subset ?? [:] }
        let total = backends.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return backends[0].subset }
        var ticket = Int.random(in: 0..<total, using: &random)
        for backend in backends {
            if ticket < backend.weight { return backend.subset }
            ticket -= backend.weight
        }
        return backends[backends.count - 1].subset
    }

    /// True with probability `percent`/100 (fault injection, mirroring).
    func chance(_ percent: Double) -> Bool {
        percent >= 100 || (percent > 0 && Double.random(in: 0..<100, using: &random) < percent)
    }

    func requestStarted(_ address: HostPort) { inFlight[address, default: 0] += 1 }
    func requestFinished(_ address: HostPort) { inFlight[address, default: 0] -= 1 }
    func inFlightCount(_ address: HostPort) -> Int { inFlight[address, default: 0] }

    // MARK: Connection pool

    /// Requests waiting for a connection to a destination at its connection limit, by the
    /// id its `ConnectionPoolStateMachine` gave them.
    private var waiting: [Int: (promise: EventLoopPromise<UpstreamHandler>, key: PoolKey, connectTimeout: TimeAmount)] = [:]

    /// An idle keep-alive connection to `key`, or a new one on this loop. To a destination
    /// service (not a tunnel), within its pool limits: at `maxConnections` the request waits
    /// for a connection to come free; with `maxPendingRequests` also reached it fails at once
    /// with `circuit-open` (or the TrafficPolicy's fallback).
    func lease(_ key: PoolKey, connectTimeout: TimeAmount) -> EventLoopFuture<UpstreamHandler> {
        if let handler = popIdle(key) { return eventLoop.makeSucceededFuture(handler) }
        guard !key.tunnel, let service = key.service, resilience.index(forKey: service) != nil else {
            return connect(key, connectTimeout: connectTimeout)
        }
        let elsewhere = hasIdle(service: service, except: key)
        let action = resilience[service]!.pool.lease(key.address, idleHere: false, idleElsewhere: elsewhere)
        defer { publishBreakerState(service: service) }
        switch action {
        case .useIdle, .connect:
            return connect(key, connectTimeout: connectTimeout)
        case .closeIdleAndConnect:
            closeOneIdle(service: service, except: key)
            return connect(key, connectTimeout: connectTimeout)
        case .wait(let id):
            let promise = eventLoop.makePromise(of: UpstreamHandler.self)
            waiting[id] = (promise, key, connectTimeout)
            // Waiting for a connection is part of connecting: bounded by the connect timeout,
            // so a waiter whose request went away does not hold its pending slot for long.
            eventLoop.scheduleTask(in: connectTimeout) { [weak self] in
                self?.pendingTimedOut(id, service: service, after: connectTimeout)
            }
            return promise.futureResult
        case .reject(let resource):
            return eventLoop.makeFailedFuture(circuitOpen(service, "circuit breaker \(resource) reached"))
        }
    }

    /// Returns a connection whose response ended cleanly and that may carry another request:
    /// to the oldest request waiting for one, else to the idle pool.
    func release(_ handler: UpstreamHandler, key: PoolKey) {
        guard !draining, !handler.isClosed else {
            handler.channel?.close(promise: nil)
            return
        }
        if let service = handler.poolService, let action = resilience[service]?.pool.released(key.address) {
            publishBreakerState(service: service)
            switch action {
            case .none, .connect:
                break
            case .handOver(let id):
                guard let waiter = waiting.removeValue(forKey: id) else { break }
                // Not inline: the releasing exchange is still finishing on this stack.
                eventLoop.execute { self.handOver(handler, to: waiter) }
                return
            case .closeAndConnect(let id, _):
                handler.poolService = nil  // its slot goes to the waiter
                handler.channel?.close(promise: nil)
                serveWaiter(id)
                return
            }
        }
        guard idle[key, default: []].count < maxIdlePerEndpoint else {
            handler.channel?.close(promise: nil)
            return
        }
        idle[key, default: []].append(handler)
        handler.closeIfStillIdle(after: upstreamIdleTimeout)
    }

    /// Closes every idle connection (drain, shutdown).
    func closeIdle() {
        for handler in idle.values.joined() { handler.channel?.close(promise: nil) }
        idle.removeAll()
    }

    var idleCount: Int { idle.values.reduce(0) { $0 + $1.count } }

    /// Requests waiting for a connection on this loop (tests, `/clusters`).
    var pendingCount: Int { waiting.count }

    private func popIdle(_ key: PoolKey) -> UpstreamHandler? {
        while !key.tunnel, var list = idle[key], let handler = list.popLast() {
            idle[key] = list
            if !handler.isClosed, handler.channel?.isActive == true { return handler }
        }
        return nil
    }

    private func hasIdle(service: String, except key: PoolKey) -> Bool {
        idle.contains { $0.key.service == service && $0.key != key && !$0.value.isEmpty }
    }

    /// Frees a slot at the connection limit: closes an idle connection to another endpoint
    /// of `service`, handing its slot to the caller's new connection.
    private func closeOneIdle(service: String, except key: PoolKey) {
        guard let other = idle.first(where: { $0.key.service == service && $0.key != key && !$0.value.isEmpty })?.key,
            let handler = idle[other]?.popLast()
        else { return }
        handler.poolService = nil
        handler.channel?.close(promise: nil)
    }

    private func pendingTimedOut(_ id: Int, service: String, after timeout: TimeAmount) {
        guard resilience[service]?.pool.cancel(id: id) == true,
            let waiter = waiting.removeValue(forKey: id)
        else { return }
        publishBreakerState(service: service)
        waiter.promise.fail(
            circuitOpen(service, "no connection came free within \(timeout.nanoseconds / 1_000_000) ms (max-connections)"))
    }

    /// A `circuit-open` refusal (or the fallback), counted in `sidecar_circuit_breaker_rejections_total`.
    func circuitOpen(_ service: String, _ detail: String) -> ProxyError {
        metrics.peer(service).circuitBreakerRejections.increment()
        var error = ProxyError(.circuitOpen, "\(service): \(detail)")
        error.fallback = resilience[service]?.policy.fallback
        return error
    }

    /// A waiter gets a connection on its own: a freed slot opens one for it.
    private func serveWaiter(_ id: Int) {
        guard let waiter = waiting.removeValue(forKey: id) else { return }
        connect(waiter.key, connectTimeout: waiter.connectTimeout).cascade(to: waiter.promise)
    }

    private func handOver(_ handler: UpstreamHandler, to waiter: (promise: EventLoopPromise<UpstreamHandler>, key: PoolKey, connectTimeout: TimeAmount)) {
        if !handler.isClosed, handler.channel?.isActive == true {
            waiter.promise.succeed(handler)
        } else {
            // Closed in between (its slot went back to the pool): lease afresh.
            lease(waiter.key, connectTimeout: waiter.connectTimeout).cascade(to: waiter.promise)
        }
    }

    /// A pooled connection closed (or never connected): it leaves the idle list, and its pool
    /// slot, if it still holds one, opens a connection for the oldest waiter or is freed.
    private func upstreamClosed(_ handler: UpstreamHandler, key: PoolKey) {
        if var list = idle[key], let index = list.firstIndex(where: { $0 === handler }) {
            list.remove(at: index)
            idle[key] = list
        }
        guard let service = handler.poolService else { return }
        handler.poolService = nil
        guard let action = resilience[service]?.pool.closed() else { return }
        publishBreakerState(service: service)
        if case .connect(let id, _) = action { serveWaiter(id) }
    }

    private func connect(_ key: PoolKey, connectTimeout: TimeAmount) -> EventLoopFuture<UpstreamHandler> {
        let upstream = UpstreamHandler(metrics: metrics)
        if !key.tunnel, let service = key.service, resilience.index(forKey: service) != nil { upstream.poolService = service }
        upstream.onClose = { [weak self, weak upstream] in
            guard let self, let upstream else { return }
            self.upstreamClosed(upstream, key: key)
        }
        let upstreamBox = NIOLoopBound(upstream, eventLoop: eventLoop)
        return connector.connect(key, upstream: upstream, trustDomain: table.trustDomain, timeout: connectTimeout, on: eventLoop)
            .map { upstreamBox.value }
            .flatMapErrorThrowing { [weak self] error in
                self?.upstreamClosed(upstreamBox.value, key: key)
                throw error
            }
    }
}
