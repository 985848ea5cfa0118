import NIOCore
import SidecarCore

/// What a sidecar builds from resources it accepted (a bootstrap file, an applied stream or a
/// snapshot): the route table, then per destination the resilience state of every event loop
/// and the rate limiters, driven for a few requests. Accepted config must never trap here: the
/// decoders' ranges are the only guard these constructors get.
enum RuntimeExercise {
    /// `loopCount` is the sidecar's `--workers` (1…8 in the targets).
    static func run(localService: String, trustDomain: String, resources: [MeshResource], loopCount: Int) {
        let table = RouteTable(localService: localService, trustDomain: trustDomain, resources: resources)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for (service, destination) in table.destinations {
            fuzzCheck(table.destination(forHost: Substring(service))?.service == service,
                      "destination \(service) not found by its own name")
            var resilience = DestinationResilience(
                policy: destination.policy, endpoints: destination.endpoints.map(\.address), loopCount: loopCount, now: start)
            _ = resilience.update(policy: destination.policy, endpoints: destination.endpoints.map(\.address))
            _ = resilience.tickOutliers(now: start + .seconds(3600))
            resilience.retryBudget.requestStarted(now: start)
            if let limit = destination.policy.rateLimit { takeTokens(limit, start: start) }
            for rule in destination.rules {
                if let limit = rule.rateLimit { takeTokens(limit, start: start) }
                var total = 0
                for backend in rule.backends {
                    let (sum, overflow) = total.addingReportingOverflow(backend.weight)
                    fuzzCheck(!overflow && backend.weight >= 0, "backend weights overflow or go negative")
                    total = sum
                }
                var rng = SystemRandomNumberGenerator()
                let fault = FaultInjectionDecision.decide(rule.fault, using: &rng)
                if let status = fault.abortStatus { fuzzCheck((100...599).contains(status), "abort status \(status)") }
                _ = MirrorDecision.shouldMirror(rule.mirror, using: &rng)
                _ = rule.timeout.timeAmount
                _ = RetryStateMachine(
                    policy: rule.retries, request: .init(method: .GET), deadline: start + rule.timeout.timeAmount)
            }
        }
        if let limit = table.localPolicy?.rateLimit { takeTokens(limit, start: start) }
    }

    /// A few requests through both limiter forms, at, just after and long after `start`.
    private static func takeTokens(_ limit: RateLimit, start: NIODeadline) {
        var bucket = TokenBucket(limit)
        let shared = SharedTokenBucket(limit)
        for offset in [Int64(0), 0, 1, 1_000_000_000, 86_400_000_000_000] {
            let now = start + .nanoseconds(offset)
            let local = bucket.tryTake(now: now)
            let global = shared.tryTake(now: now)
            fuzzCheck(local == global, "TokenBucket and SharedTokenBucket disagree: \(local) vs \(global)")
            _ = local.retryAfterSeconds
        }
    }
}
