import NIOCore
import NIOPosix
import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// The rate limit shared by all event loops: the same GCRA, exact under concurrency, and
    /// the per-loop caches over the shared map (rules, inbound, per caller).
    @Suite struct SharedTokenBucketTests {
        @Test func sameDecisionsAsThePlainBucket() {
            var clock = ManualClock()
            let limit = RateLimit(requestsPerSecond: 50, burst: 10)
            var plain = TokenBucket(limit)
            let shared = SharedTokenBucket(limit)
            for step in 0..<2000 {
                #expect(shared.tryTake(now: clock.now) == plain.tryTake(now: clock.now), "step \(step)")
                clock.advance(by: .milliseconds(step % 7 == 0 ? 40 : 3))
            }
        }

        @Test func exactAcrossThreadsTakingAtOnce() async {
            // Four threads race for one instant's tokens: exactly the burst is admitted.
            let clock = ManualClock()
            let bucket = SharedTokenBucket(RateLimit(requestsPerSecond: 1, burst: 1000))
            let now = clock.now
            let allowed = await withTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var allowed = 0
                        for _ in 0..<5000 where bucket.tryTake(now: now) == .allowed { allowed += 1 }
                        return allowed
                    }
                }
                return await group.reduce(0, +)
            }
            #expect(allowed == 1000)
        }

        @Test func loopsShareOneRuleBucketAndKeepItAcrossTables() {
            let clock = ManualClock()
            let shared = SharedLimits()
            var loopA = LoopRateLimiters(shared: shared)
            var loopB = LoopRateLimiters(shared: shared)
            let limit = RateLimit(requestsPerSecond: 10, burst: 4)
            var allowed = 0
            for _ in 0..<10 {
                if loopA.takeRuleToken(service: "payments", ruleIndex: 0, limit: limit, now: clock.now) == .allowed { allowed += 1 }
                if loopB.takeRuleToken(service: "payments", ruleIndex: 0, limit: limit, now: clock.now) == .allowed { allowed += 1 }
            }
            #expect(allowed == 4, "one burst for the process, not one per loop")
            loopA.tableReplaced()
            #expect(loopA.takeRuleToken(service: "payments", ruleIndex: 0, limit: limit, now: clock.now) != .allowed)
            // Another rule, or a changed limit (it comes with a new table), is another bucket.
            #expect(loopA.takeRuleToken(service: "payments", ruleIndex: 1, limit: limit, now: clock.now) == .allowed)
            loopB.tableReplaced()
            let raised = RateLimit(requestsPerSecond: 10, burst: 5)
            #expect(loopB.takeRuleToken(service: "payments", ruleIndex: 0, limit: raised, now: clock.now) == .allowed)
        }

        @Test func inboundSharedAndPerCaller() {
            let clock = ManualClock()
            let shared = SharedLimits()
            var loopA = LoopRateLimiters(shared: shared)
            var loopB = LoopRateLimiters(shared: shared)
            let one = RateLimit(requestsPerSecond: 1, burst: 1)
            #expect(loopA.takeInboundToken(limit: one, caller: "web", now: clock.now) == .allowed)
            #expect(loopB.takeInboundToken(limit: one, caller: "api", now: clock.now) != .allowed)
            #expect(loopB.takeInboundToken(limit: nil, caller: "api", now: clock.now) == .allowed)

            let perCaller = RateLimit(requestsPerSecond: 1, burst: 1, perCaller: true)
            #expect(loopA.takeInboundToken(limit: perCaller, caller: "web", now: clock.now) == .allowed)
            #expect(loopB.takeInboundToken(limit: perCaller, caller: "web", now: clock.now) != .allowed)
            #expect(loopB.takeInboundToken(limit: perCaller, caller: "api", now: clock.now) == .allowed)
        }

        @Test func theSharedMapIsBoundedForgettingFullBucketsFirst() {
            var clock = ManualClock()
            let shared = SharedLimits(capacity: 2)
            let limit = RateLimit(requestsPerSecond: 1, burst: 2)
            let web = shared.bucket(.init(scope: "inbound", caller: "web", limit: limit), now: clock.now)
            #expect(web.tryTake(now: clock.now) == .allowed)
            _ = shared.bucket(.init(scope: "inbound", caller: "api", limit: limit), now: clock.now)
            #expect(shared.bucketCount == 2)
            // "api" is full (unused), "web" is not: the third key evicts "api" only.
            _ = shared.bucket(.init(scope: "inbound", caller: "batch", limit: limit), now: clock.now)
            #expect(shared.bucketCount == 2)
            #expect(shared.bucket(.init(scope: "inbound", caller: "web", limit: limit), now: clock.now) === web)
            clock.advance(by: .seconds(10))
            _ = shared.bucket(.init(scope: "inbound", caller: "new", limit: limit), now: clock.now)
            #expect(shared.bucketCount == 1)
        }
    }
}
