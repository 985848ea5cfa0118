import NIOCore
import Testing

@testable import SidecarCore

/// Which failed tries are tried again, after what backoff, and when the answer is no.
/// A clock, a seeded RNG and a budget shared by the tries of one test.
struct RetryHarness {
    let endpoint = HostPort(host: "10.0.0.1", port: 15006)
    var clock = ManualClock()
    var rng = SeededRandom(seed: 42)
    var budget = RetryBudgetStateMachine(MeshDefaults.retryBudget)

    func machine(
        _ method: HTTPRequestMethod = .GET, key: Bool = false, attempts: Int = 3,
        retryOn: [RetryCondition] = [.connectFailure, .reset, .gatewayError], timeout: TimeAmount = .seconds(2),
        perTry: MeshDuration? = nil
    ) -> RetryStateMachine {
        RetryStateMachine(
            policy: RetryPolicy(attempts: attempts, perTryTimeout: perTry, retryOn: retryOn),
            request: .init(method: method, hasIdempotencyKey: key), deadline: clock.now + timeout)
    }

    mutating func decide(_ retry: inout RetryStateMachine, _ failure: RetryStateMachine.Failure) -> RetryStateMachine.Action {
        retry.decide(after: failure, from: endpoint, now: clock.now, budget: &budget, using: &rng)
    }
}

extension ResilienceTests {
    @Suite struct RetryStateMachineTests {
        @Test func idempotentRequestIsRetriedOnAnotherEndpoint() {
            var h = RetryHarness()
            var retry = h.machine()
            guard case .retry(let after, let excluded) = h.decide(&retry, .status(503)) else {
                Issue.record("expected a retry")
                return
            }
            #expect(excluded == h.endpoint)
            #expect(after >= .zero && after <= .milliseconds(25))
            #expect(retry.attempt == 2)
            #expect(h.budget.totals(h.clock.now).retries == 1)
        }

        @Test func postThatReachedTheUpstreamIsNotRetried() {
            var h = RetryHarness()
            for failure in [RetryStateMachine.Failure.status(503), .reset, .perTryTimeout] {
                var retry = h.machine(.POST, retryOn: [.reset, .serverError])
                #expect(h.decide(&retry, failure) == .giveUp(.notIdempotent))
            }
            #expect(h.budget.totals(h.clock.now).retries == 0)
        }

        @Test func postThatNeverReachedTheUpstreamIsRetried() {
            var h = RetryHarness()
            var retry = h.machine(.POST, retryOn: [.connectFailure, .refusedStream])
            #expect(h.decide(&retry, .connectFailure).isRetry)
            #expect(h.decide(&retry, .refusedStream).isRetry)
        }

        @Test func idempotencyKeyMakesPostRetryable() {
            var h = RetryHarness()
            var retry = h.machine(.POST, key: true)
            #expect(h.decide(&retry, .status(502)).isRetry)
            var patch = h.machine(.PATCH, key: false)
            #expect(h.decide(&patch, .status(502)) == .giveUp(.notIdempotent))
        }

        @Test func everyIdempotentMethodQualifies() {
            let idempotent: [HTTPRequestMethod] = [.GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE]
            for method in idempotent { #expect(method.isIdempotent) }
            for method in [HTTPRequestMethod.POST, .PATCH, .CONNECT, .other] { #expect(!method.isIdempotent) }
        }

        @Test func conditionsOutsideRetryOnGiveUp() {
            var h = RetryHarness()
            var retry = h.machine(retryOn: [.connectFailure, .reset, .status(503)])
            #expect(h.decide(&retry, .status(500)) == .giveUp(.notRetryable))
            #expect(h.decide(&retry, .status(502)) == .giveUp(.notRetryable))
            #expect(h.decide(&retry, .status(503)).isRetry)
            var noConnect = h.machine(retryOn: [.status(503)])
            #expect(h.decide(&noConnect, .connectFailure) == .giveUp(.notRetryable))
        }

        @Test func envoyMeaningOfConditions() {
            typealias F = RetryStateMachine.Failure
            #expect(F.status(500).isCovered(by: .serverError))
            #expect(!F.status(500).isCovered(by: .gatewayError))
            #expect(F.status(504).isCovered(by: .gatewayError))
            #expect(!F.status(429).isCovered(by: .serverError))
            #expect(F.status(429).isCovered(by: .status(429)))
            #expect(F.connectFailure.isCovered(by: .serverError))
            #expect(F.perTryTimeout.isCovered(by: .reset))
            #expect(!F.connectFailure.isCovered(by: .reset))
            #expect(!F.status(503).isCovered(by: .connectFailure))
            #expect(F.status(503).reason == "503")
            #expect(F.connectFailure.reason == "connect-failure")
        }

        @Test func largeBodyThatWasForwardedIsNotRetried() {
            var h = RetryHarness()
            var retry = h.machine(.PUT)
            #expect(retry.shouldBufferBody)
            let atLimit = retry.requestBodyForwarded(totalBytes: 64 * 1024)
            #expect(atLimit)
            let overLimit = retry.requestBodyForwarded(totalBytes: 64 * 1024 + 1)
            #expect(!overLimit)
            #expect(h.decide(&retry, .status(503)) == .giveUp(.bodyTooLarge))
            // Even a later connect failure: the body already sent is gone.
            #expect(h.decide(&retry, .connectFailure) == .giveUp(.bodyTooLarge))
        }

        @Test func largeBodyNotYetForwardedSurvivesAConnectFailure() {
            var h = RetryHarness()
            var retry = RetryStateMachine(
                policy: RetryPolicy(attempts: 3), request: .init(method: .PUT, contentLength: 1 << 20),
                deadline: h.clock.now + .seconds(2))
            #expect(!retry.shouldBufferBody)
            #expect(h.decide(&retry, .connectFailure).isRetry)
        }

        @Test func declaredLargeBodyIsFinalOnceAnyOfItWasForwarded() {
            var h = RetryHarness()
            var retry = RetryStateMachine(
                policy: RetryPolicy(attempts: 3), request: .init(method: .PUT, contentLength: 100 * 1024),
                deadline: h.clock.now + .seconds(2))
            #expect(!retry.shouldBufferBody)
            let keep = retry.requestBodyForwarded(totalBytes: 10)
            #expect(!keep)
            // Only 10 bytes went out, but no copy was kept: nothing to replay.
            #expect(h.decide(&retry, .status(503)) == .giveUp(.bodyTooLarge))
        }

        @Test func aPostWithoutIdempotencyKeyKeepsNoCopy() {
            var h = RetryHarness()
            var post = h.machine(.POST)
            #expect(!post.shouldBufferBody)
            #expect(h.machine(.POST, key: true).shouldBufferBody)
            // Its body went out uncopied: even a later connect failure cannot replay it.
            post.requestBodyForwarded(totalBytes: 1)
            #expect(h.decide(&post, .connectFailure) == .giveUp(.bodyTooLarge))
        }

        @Test func attemptsCountTheFirstTry() {
            var h = RetryHarness()
            var retry = h.machine(attempts: 3)
            #expect(h.decide(&retry, .status(503)).isRetry)
            #expect(h.decide(&retry, .status(503)).isRetry)
            #expect(h.decide(&retry, .status(503)) == .giveUp(.attemptsExhausted))
            #expect(retry.attempt == 3)
            var single = h.machine(attempts: 1)
            #expect(!single.shouldBufferBody)
            #expect(h.decide(&single, .connectFailure) == .giveUp(.attemptsExhausted))
        }

        @Test func noTryIsScheduledPastTheDeadline() {
            var h = RetryHarness()
            var maxRng = MaxRandom()
            var retry = h.machine(attempts: 10, timeout: .milliseconds(100))
            // Ceilings 25, 50, 100 ms: the third retry would start after the deadline.
            var starts: [TimeAmount] = []
            while case .retry(let after, _) = retry.decide(
                after: .status(503), from: h.endpoint, now: h.clock.now, budget: &h.budget, using: &maxRng)
            {
                h.clock.advance(by: after)
                starts.append(after)
            }
            #expect(h.clock.now < retry.deadline)
            let last = retry.decide(after: .status(503), from: h.endpoint, now: h.clock.now, budget: &h.budget, using: &maxRng)
            #expect(last == .giveUp(.deadline))
            #expect(starts.count == 2)
        }

        @Test func perTryDeadlineNeverPassesTheRouteDeadline() {
            let h = RetryHarness()
            let retry = h.machine(timeout: .seconds(1), perTry: .milliseconds(300))
            #expect(retry.tryDeadline(now: h.clock.now) == h.clock.now + .milliseconds(300))
            #expect(retry.tryDeadline(now: h.clock.now + .milliseconds(900)) == retry.deadline)
            #expect(h.machine(perTry: nil).tryDeadline(now: h.clock.now) == h.machine().deadline)
        }

        @Test func backoffCeilingDoublesUpToTheCap() {
            let retry = RetryStateMachine(
                policy: RetryPolicy(attempts: 20), request: .init(method: .GET), deadline: .uptimeNanoseconds(0))
            let ms: Int64 = 1_000_000
            #expect((1...6).map { retry.backoffCeiling(retry: $0) } == [25 * ms, 50 * ms, 100 * ms, 200 * ms, 250 * ms, 250 * ms])
            #expect(retry.backoffCeiling(retry: 200) == 250 * ms)
        }

        @Test func backoffIsFullJitterWithinBounds() {
            var h = RetryHarness()
            var samples: [Int64] = []
            for _ in 0..<2000 {
                var retry = h.machine(attempts: 3, timeout: .seconds(10))
                _ = h.decide(&retry, .status(503))
                h.budget = RetryBudgetStateMachine(MeshDefaults.retryBudget)
                guard case .retry(let after, _) = h.decide(&retry, .status(503)) else {
                    Issue.record("expected a retry")
                    return
                }
                samples.append(after.nanoseconds)
                h.budget = RetryBudgetStateMachine(MeshDefaults.retryBudget)
            }
            let ceiling: Int64 = 50_000_000
            #expect(samples.allSatisfy { $0 >= 0 && $0 <= ceiling })
            // Full jitter: uniform over [0, ceiling], so both ends are visited and the mean is half.
            #expect(samples.min()! < ceiling / 20)
            #expect(samples.max()! > ceiling - ceiling / 20)
            let mean = Double(samples.reduce(0, +)) / Double(samples.count)
            #expect(abs(mean - Double(ceiling) / 2) < Double(ceiling) * 0.05)
        }

        @Test func spentBudgetStopsTheRetry() {
            var h = RetryHarness()
            h.budget = RetryBudgetStateMachine(RetryBudget(percent: 0, minPerSecond: 0))
            var retry = h.machine()
            #expect(h.decide(&retry, .status(503)) == .budgetExhausted)
            #expect(retry.attempt == 1)
        }
    }
}

extension RetryStateMachine.Action {
    var isRetry: Bool {
        if case .retry = self { return true }
        return false
    }
}
