#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Linkerd's peak-EWMA balancer: each endpoint's cost is its latency estimate times its
/// outstanding requests plus one, and power of two choices takes the cheaper, so a slow or
/// busy endpoint gets less traffic and a fast one more.
///
/// The estimate is peak-sensitive: a latency above it replaces it at once; below it, it moves
/// there as an exponentially weighted average over `decay` (10 s), and without observations it
/// decays toward zero over the same time, so an endpoint that was slow is tried again. An
/// endpoint never observed costs `defaultLatency` (30 ms, as Linkerd). Estimates of endpoints
/// that left the destination are dropped when the map outgrows the candidates fourfold.
struct PeakEWMABalancer: LoadBalancer {
    static let decay: TimeAmount = .seconds(10)
    static let defaultLatency: TimeAmount = .milliseconds(30)

    private struct Estimate {
        var nanos: Double
        var at: NIODeadline
    }

    private var estimates: [HostPort: Estimate] = [:]

    mutating func pick(
        _ candidates: [RouteTable.Endpoint], inFlight: (HostPort) -> Int, now: NIODeadline,
        random: inout some RandomNumberGenerator
    ) -> RouteTable.Endpoint {
        if estimates.count > 4 * max(candidates.count, 16) {
            let live = Set(candidates.map(\.address))
            estimates = estimates.filter { live.contains($0.key) }
        }
        return pickOfTwo(candidates, random: &random) { endpoint in
            latency(of: endpoint.address, now: now) * Double(inFlight(endpoint.address) + 1)
        }
    }

    mutating func observe(latency: TimeAmount, of endpoint: HostPort, now: NIODeadline) {
        let sample = Double(max(latency.nanoseconds, 0))
        guard let old = estimates[endpoint] else {
            estimates[endpoint] = Estimate(nanos: sample, at: now)
            return
        }
        let current = decayed(old, now: now)
        if sample > current {
            estimates[endpoint] = Estimate(nanos: sample, at: now)
        } else {
            let weight = Self.weight(elapsed: now, since: old.at)
            estimates[endpoint] = Estimate(nanos: current * weight + sample * (1 - weight), at: now)
        }
    }

    /// The endpoint's latency estimate now, in nanoseconds.
    func latency(of endpoint: HostPort, now: NIODeadline) -> Double {
        guard let estimate = estimates[endpoint] else { return Double(Self.defaultLatency.nanoseconds) }
        return decayed(estimate, now: now)
    }

    private func decayed(_ estimate: Estimate, now: NIODeadline) -> Double {
        estimate.nanos * Self.weight(elapsed: now, since: estimate.at)
    }

    /// e^(−elapsed/decay): 1 right after an observation, towards 0 as time passes.
    private static func weight(elapsed now: NIODeadline, since then: NIODeadline) -> Double {
        guard now > then else { return 1 }
        let elapsed = Double((now - then).nanoseconds)
        return exp(-elapsed / Double(decay.nanoseconds))
    }
}
