import NIOCore

/// Picks one endpoint of a destination for a try, among candidates the caller already
/// narrowed (the rule's subset, outlier ejections, endpoints this request already tried).
///
/// One per destination per event loop, kept across snapshots while the policy's kind stays
/// the same; confined to the loop (no locks). `inFlight` is the loop's count of requests
/// outstanding per endpoint; time and randomness come from the loop, so tests pass their own.
/// `observe` feeds latency-aware balancers the time from a request's head going upstream to
/// its response head.
protocol LoadBalancer: Sendable {
    mutating func pick(
        _ candidates: [RouteTable.Endpoint], inFlight: (HostPort) -> Int, now: NIODeadline,
        random: inout some RandomNumberGenerator
    ) -> RouteTable.Endpoint

    mutating func observe(latency: TimeAmount, of endpoint: HostPort, now: NIODeadline)
}

extension LoadBalancer {
    mutating func observe(latency: TimeAmount, of endpoint: HostPort, now: NIODeadline) {}
}

extension LoadBalancerKind {
    /// A fresh balancer of this kind.
    func makeBalancer() -> any LoadBalancer {
        switch self {
        case .leastRequest: return LeastRequestBalancer()
        case .roundRobin: return RoundRobinBalancer()
        case .ewma: return PeakEWMABalancer()
        }
    }
}

/// Power of two choices: two distinct candidates at random, the one `cost` ranks lower wins
/// (ties to the first). With one candidate, that one.
func pickOfTwo(
    _ candidates: [RouteTable.Endpoint], random: inout some RandomNumberGenerator,
    cost: (RouteTable.Endpoint) -> Double
) -> RouteTable.Endpoint {
    guard candidates.count > 1 else { return candidates[0] }
    let first = Int.random(in: 0..<candidates.count, using: &random)
    var second = Int.random(in: 0..<(candidates.count - 1), using: &random)
    if second >= first { second += 1 }
    let a = candidates[first], b = candidates[second]
    return cost(a) <= cost(b) ? a : b
}
