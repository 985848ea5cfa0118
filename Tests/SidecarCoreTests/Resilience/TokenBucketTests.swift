import NIOCore
import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// The local rate limit (GCRA): sustained rate, burst, the Retry-After it reports.
    @Suite struct TokenBucketTests {
        /// Offers a request every `spacing` for `duration`; returns how many were allowed.
        static func offer(
            _ bucket: inout TokenBucket, clock: inout ManualClock, every spacing: TimeAmount, for duration: TimeAmount
        ) -> Int {
            var allowed = 0
            var elapsed = TimeAmount.zero
            while elapsed < duration {
                if bucket.tryTake(now: clock.now) == .allowed { allowed += 1 }
                clock.advance(by: spacing)
                elapsed = elapsed + spacing
            }
            return allowed
        }

        @Test func sustainedRateWithinFivePercentOverTenSeconds() {
            for (rate, burst) in [(50, 1), (100, 100), (7, 3), (1000, 10)] {
                var clock = ManualClock()
                var bucket = TokenBucket(RateLimit(requestsPerSecond: rate, burst: burst))
                // Offered at 10x the rate: the limiter alone decides.
                let allowed = Self.offer(
                    &bucket, clock: &clock, every: .nanoseconds(100_000_000 / Int64(rate)), for: .seconds(10))
                let expected = Double(rate * 10 + burst)
                #expect(abs(Double(allowed) - expected) <= expected * 0.05, "rate \(rate) burst \(burst): \(allowed)")
            }
        }

        /// Found by fuzzing (fuzz/corpus/apply-yaml): the decoder accepts any burst up to
        /// Int.max, and `(burst - 1) × interval` trapped on overflow when the sidecar built
        /// the limiter.
        @Test func aHugeBurstIsCappedNotATrap() {
            let clock = ManualClock()
            #expect(TokenBucket(RateLimit(requestsPerSecond: 1, burst: Int.max)).tolerance == TokenBucket.maxTolerance)
            for limit in [RateLimit(requestsPerSecond: 1, burst: Int.max), RateLimit(requestsPerSecond: Int.max, burst: Int.max)] {
                var bucket = TokenBucket(limit)
                #expect(bucket.tolerance <= TokenBucket.maxTolerance)
                for _ in 0..<3 { #expect(bucket.tryTake(now: clock.now) == .allowed) }
                #expect(SharedTokenBucket(limit).tryTake(now: clock.now) == .allowed)
            }
        }

        @Test func burstIsAvailableAtOnceThenNothing() {
            let clock = ManualClock()
            var bucket = TokenBucket(RateLimit(requestsPerSecond: 10, burst: 5))
            for _ in 0..<5 { #expect(bucket.tryTake(now: clock.now) == .allowed) }
            #expect(bucket.tryTake(now: clock.now) == .limited(retryAfter: .milliseconds(100)))
            #expect(!bucket.isFull(now: clock.now))
        }

        @Test func retryAfterIsWhenTheNextRequestPasses() {
            var clock = ManualClock()
            var bucket = TokenBucket(RateLimit(requestsPerSecond: 2, burst: 1))
            #expect(bucket.tryTake(now: clock.now) == .allowed)
            clock.advance(by: .milliseconds(100))
            let decision = bucket.tryTake(now: clock.now)
            #expect(decision == .limited(retryAfter: .milliseconds(400)))
            #expect(decision.retryAfterSeconds == 1)
            clock.advance(by: .milliseconds(399))
            #expect(bucket.tryTake(now: clock.now) != .allowed)
            clock.advance(by: .milliseconds(1))
            #expect(bucket.tryTake(now: clock.now) == .allowed)
            // Refused requests do not consume tokens.
            #expect(bucket.tryTake(now: clock.now) == .limited(retryAfter: .milliseconds(500)))
        }

        @Test func retryAfterSecondsRoundsUp() {
            #expect(TokenBucket.Decision.limited(retryAfter: .milliseconds(1)).retryAfterSeconds == 1)
            #expect(TokenBucket.Decision.limited(retryAfter: .milliseconds(1001)).retryAfterSeconds == 2)
            #expect(TokenBucket.Decision.allowed.retryAfterSeconds == 0)
        }

        @Test func quietTimeRefillsOnlyUpToTheBurst() {
            var clock = ManualClock()
            var bucket = TokenBucket(RateLimit(requestsPerSecond: 10, burst: 3))
            clock.advance(by: .seconds(60))
            var allowed = 0
            for _ in 0..<10 where bucket.tryTake(now: clock.now) == .allowed { allowed += 1 }
            #expect(allowed == 3)
        }
    }
}
