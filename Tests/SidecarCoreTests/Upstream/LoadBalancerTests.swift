import NIOCore
import Testing

@testable import SidecarCore

/// The balancers with a seeded random and a manual clock: each prefers what it should.
@Suite struct LoadBalancerTests {
    let fast = RouteTable.Endpoint(address: HostPort(host: "10.0.0.1", port: 1), labels: [:])
    let slow = RouteTable.Endpoint(address: HostPort(host: "10.0.0.2", port: 1), labels: [:])
    let third = RouteTable.Endpoint(address: HostPort(host: "10.0.0.3", port: 1), labels: [:])
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func shares(
        _ balancer: inout some LoadBalancer, _ candidates: [RouteTable.Endpoint], picks: Int = 1000,
        inFlight: [HostPort: Int] = [:], now: NIODeadline
    ) -> [HostPort: Int] {
        var random = LoopRandom(seed: 42)
        var counts: [HostPort: Int] = [:]
        for _ in 0..<picks {
            let endpoint = balancer.pick(candidates, inFlight: { inFlight[$0, default: 0] }, now: now, random: &random)
            counts[endpoint.address, default: 0] += 1
        }
        return counts
    }

    @Test func roundRobinTakesTurns() {
        var balancer = RoundRobinBalancer()
        #expect(shares(&balancer, [fast, slow, third], picks: 300, now: start) == [fast.address: 100, slow.address: 100, third.address: 100])
    }

    @Test func leastRequestPrefersTheLessLoadedEndpoint() {
        var balancer = LeastRequestBalancer()
        let two = shares(&balancer, [fast, slow], inFlight: [slow.address: 3], now: start)
        #expect(two[fast.address] == 1000, "of two, both are always compared")
        let three = shares(&balancer, [fast, slow, third], inFlight: [slow.address: 3, third.address: 3], now: start)
        // The loaded two only win when both of the pair are loaded: 1/3 of the pairs.
        #expect((three[fast.address] ?? 0) > 600, "\(three)")
        let even = shares(&balancer, [fast, slow, third], now: start)
        #expect(even.values.allSatisfy { $0 > 250 }, "no load: an even spread \(even)")
    }

    @Test func peakEWMAPrefersTheFasterEndpointAndTriesTheSlowOneAgainLater() {
        var balancer = PeakEWMABalancer()
        balancer.observe(latency: .milliseconds(2), of: fast.address, now: start)
        balancer.observe(latency: .milliseconds(80), of: slow.address, now: start)
        #expect(shares(&balancer, [fast, slow], now: start)[fast.address] == 1000)
        // Outstanding requests count too: 20 on the fast one cost more than one slow try.
        let busy = shares(&balancer, [fast, slow], inFlight: [fast.address: 60], now: start)
        #expect(busy[slow.address] == 1000)
        // Without news the slow estimate decays, so the slow endpoint is tried again.
        #expect(balancer.latency(of: slow.address, now: start + .seconds(30)) < Double(TimeAmount.milliseconds(5).nanoseconds))
        let three = shares(&balancer, [fast, slow, third], now: start)
        #expect((three[slow.address] ?? 0) < (three[fast.address] ?? 0), "\(three)")
    }

    @Test func peakEWMAFollowsAPeakAtOnceAndRecoversGradually() {
        var balancer = PeakEWMABalancer()
        balancer.observe(latency: .milliseconds(5), of: fast.address, now: start)
        balancer.observe(latency: .milliseconds(100), of: fast.address, now: start + .milliseconds(10))
        #expect(balancer.latency(of: fast.address, now: start + .milliseconds(10)) == 100_000_000)
        balancer.observe(latency: .milliseconds(5), of: fast.address, now: start + .seconds(1))
        let after = balancer.latency(of: fast.address, now: start + .seconds(1))
        #expect(after > 5_000_000 && after < 100_000_000, "moves towards the new sample, not to it: \(after)")
        #expect(balancer.latency(of: third.address, now: start) == Double(PeakEWMABalancer.defaultLatency.nanoseconds))
    }
}
