import NIOCore

/// One destination service as one event loop sees it: its resilience state (circuit breaker,
/// connection-pool limits and the requests waiting at them, retry budget, outlier detector),
/// its `LoadBalancer`, and the tries outstanding on each of its endpoints.
///
/// Made by `LoopContext` on the first request to the service and kept across snapshots while
/// the service stays in the route table (`update`). Confined to its loop: no locks, no
/// `Sendable`. The breaker's request/retry counts and the retry budget's window are shared by
/// all loops through `SharedLimits`, so those limits hold for the process.
final class Cluster {
    let service: String
    /// Breaker, pool limits, retry budget and outlier detector (pure state machines).
    var resilience: DestinationResilience
    private var balancer: (kind: LoadBalancerKind, balancer: any LoadBalancer)?
    /// Tries outstanding per endpoint on this loop (least-request and peak-EWMA balancing).
    private var outstanding: [HostPort: Int] = [:]
    /// Requests waiting for a connection at this destination's connection limit, by the id its
    /// `ConnectionPoolStateMachine` gave them.
    var waiters: [Int: ConnectionPool.Waiter] = [:]
    private let metrics: SidecarMetrics

    init(_ destination: RouteTable.Destination, loopCount: Int, shared: SharedLimits, metrics: SidecarMetrics, now: NIODeadline) {
        service = destination.service
        resilience = DestinationResilience(
            policy: destination.policy, endpoints: destination.endpoints.map(\.address), loopCount: loopCount,
            breakerCounters: shared.breakerCounters(for: destination.service),
            retryWindow: shared.retryWindow(for: destination.service), now: now)
        self.metrics = metrics
    }

    /// A new snapshot of the same service; returns the outlier actions it causes (un-ejections
    /// of endpoints that left).
    func update(_ destination: RouteTable.Destination) -> [OutlierDetectorStateMachine<HostPort>.Action] {
        if let balancer, balancer.kind != destination.policy.loadBalancer { self.balancer = nil }
        return resilience.update(policy: destination.policy, endpoints: destination.endpoints.map(\.address))
    }

    // MARK: Load balancing

    /// An endpoint of `destination` for `rule`: a backend subset by weight, then the
    /// destination's `LoadBalancer` among endpoints outlier detection has not ejected, avoiding
    /// `excluding` (endpoints this request already tried) while another is left.
    func pick(
        _ destination: RouteTable.Destination, rule: RouteRule, excluding: TriedEndpoints, now: NIODeadline,
        random: inout LoopRandom
    ) -> RouteTable.Endpoint? {
        let subset = Self.pickSubset(rule.backends, random: &random)
        let outliers = resilience.outliersWhileEjecting()
        // One usable endpoint (a small service, or a subset of one): no lists, no balancer.
        var usableCount = 0
        var lastUsable: RouteTable.Endpoint?
        for endpoint in destination.endpoints where endpoint.matches(subset) && !(outliers?.shouldSkip(endpoint.address) ?? false) {
            usableCount += 1
            lastUsable = endpoint
            if usableCount > 1 { break }
        }
        if usableCount <= 1 { return lastUsable }
        let usable = destination.endpoints.filter { $0.matches(subset) && !(outliers?.shouldSkip($0.address) ?? false) }
        var candidates = usable.filter { !excluding.contains($0.address) }
        if candidates.isEmpty { candidates = usable }
        guard !candidates.isEmpty else { return nil }
        if candidates.count == 1 { return candidates[0] }
        let kind = destination.policy.loadBalancer
        if balancer?.kind != kind { balancer = (kind, kind.makeBalancer()) }
        let outstanding = self.outstanding
        return balancer!.balancer.pick(candidates, inFlight: { outstanding[$0, default: 0] }, now: now, random: &random)
    }

    private static func pickSubset(_ backends: [WeightedBackend], random: inout LoopRandom) -> [String: String] {
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

    /// A try's response head came `latency` after its request went to `address`.
    func observeLatency(_ latency: TimeAmount, of address: HostPort, now: NIODeadline) {
        balancer?.balancer.observe(latency: latency, of: address, now: now)
    }

    func tryStarted(at address: HostPort) { outstanding[address, default: 0] += 1 }
    func tryEnded(at address: HostPort) { outstanding[address, default: 0] -= 1 }
    func outstandingTries(at address: HostPort) -> Int { outstanding[address, default: 0] }

    // MARK: Circuit breaker and retries

    /// Takes one of the `maxRequests` slots, or refuses with `circuit-open` (or the fallback).
    /// `peek`: the same answer, taking and counting nothing (`/explain`).
    func admitRequest(peek: Bool = false) -> ProxyError? {
        if peek {
            let breaker = resilience.breaker
            guard breaker.count(.requests) >= breaker.limit(.requests) else { return nil }
            return refusal("circuit breaker \(CircuitBreaker.Resource.requests) reached")
        }
        let admission = resilience.breaker.tryAcquireRequest()
        publishBreakerState()
        if case .rejected(let resource) = admission { return circuitOpen("circuit breaker \(resource) reached") }
        return nil
    }

    /// Gives back the breaker slots an exchange held.
    func releaseSlots(request: Bool, retry: Bool) {
        if request { resilience.breaker.releaseRequest() }
        if retry { resilience.breaker.releaseRetry() }
        publishBreakerState()
    }

    /// Asks the request's retry state machine whether `failure` is retried, against this
    /// destination's retry budget; counts `sidecar_retries_total` / budget exhaustion.
    ///
    /// A retry also needs one of the breaker's `maxRetries` slots, held from the exchange's
    /// first retry until it ends (`holdsRetrySlot`); when none is free the request gives up
    /// with `max-retries` and the breaker counts a rejection.
    func decideRetry(
        _ retry: inout RetryStateMachine, after failure: RetryStateMachine.Failure, from address: HostPort?,
        holdsRetrySlot: inout Bool, now: NIODeadline, random: inout LoopRandom
    ) -> RetryStateMachine.Action {
        var action = retry.decide(after: failure, from: address, now: now, budget: &resilience.retryBudget, using: &random)
        if case .retry = action, !holdsRetrySlot {
            let admission = resilience.breaker.tryAcquireRetry()
            publishBreakerState()
            if case .rejected = admission {
                metrics.peer(service).circuitBreakerRejections.increment()
                action = .giveUp(.maxRetries)
            } else {
                holdsRetrySlot = true
            }
        }
        switch action {
        case .retry:
            metrics.retries(peer: service, reason: failure.reason).increment()
        case .budgetExhausted:
            metrics.peer(service).retryBudgetExhausted.increment()
        case .giveUp:
            break
        }
        return action
    }

    func retryBudgetRequestStarted(now: NIODeadline) {
        resilience.retryBudget.requestStarted(now: now)
    }

    /// A `circuit-open` refusal (or the fallback), counted in `sidecar_circuit_breaker_rejections_total`.
    func circuitOpen(_ detail: String) -> ProxyError {
        metrics.peer(service).circuitBreakerRejections.increment()
        return refusal(detail)
    }

    private func refusal(_ detail: String) -> ProxyError {
        var error = ProxyError(.circuitOpen, "\(service): \(detail)")
        error.fallback = resilience.policy.fallback
        return error
    }

    /// Publishes the breaker's open/closed change, if any, to `sidecar_circuit_breaker_open`.
    /// The gauge is shared: the request/retry limits (process-wide) and each loop's pool
    /// limits add 1 while they overflow, so it reads > 0 while anything is open.
    func publishBreakerState() {
        let changes = resilience.takeOpenChanges()
        if let open = changes.breaker { moveBreakerGauge(open) }
        if let open = changes.pool { moveBreakerGauge(open) }
    }

    private func moveBreakerGauge(_ open: Bool) {
        let gauge = metrics.peer(service).circuitBreakerOpen
        open ? gauge.increment() : gauge.decrement()
    }
}

extension RouteTable.Destination {
    /// Whether a try whose connect failed goes to another endpoint (the proxy's tries and an
    /// aggregate's calls): a failed connect never reached the upstream, so it is always safe,
    /// while the rule's attempts and endpoints not yet tried last.
    func retriesConnectFailure(rule: RouteRule, attempts: Int, tried: TriedEndpoints) -> Bool {
        attempts < max(rule.retries.attempts, 1) && endpoints.count > tried.count
    }
}

/// The endpoints one request has tried, which its retries avoid: mostly one, so held inline
/// (no allocation per request); a set in behaviour (each address once).
struct TriedEndpoints: ExpressibleByArrayLiteral {
    private var first: HostPort?
    private var others: [HostPort] = []

    init(arrayLiteral addresses: HostPort...) {
        for address in addresses { insert(address) }
    }

    var count: Int { (first == nil ? 0 : 1) + others.count }

    func contains(_ address: HostPort) -> Bool { first == address || others.contains(address) }

    mutating func insert(_ address: HostPort) {
        guard !contains(address) else { return }
        if first == nil { first = address } else { others.append(address) }
    }
}
