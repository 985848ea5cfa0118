import NIOCore
import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// Fault injection and mirroring fire for their configured share of requests (±3 %).
    @Suite struct FaultAndMirrorDecisionTests {
        static let draws = 10_000

        @Test func delayAndAbortSharesHoldOverTenThousandRequests() {
            for seed: UInt64 in [1, 7, 2026] {
                var rng = SeededRandom(seed: seed)
                let fault = FaultInjection(
                    delay: .init(percent: 10, duration: .milliseconds(100)), abort: .init(percent: 5, status: 503))
                var delayed = 0, aborted = 0, both = 0
                for _ in 0..<Self.draws {
                    let decision = FaultInjectionDecision.decide(fault, using: &rng)
                    if let delay = decision.delay {
                        #expect(delay == .milliseconds(100))
                        delayed += 1
                    }
                    if let status = decision.abortStatus {
                        #expect(status == 503)
                        aborted += 1
                    }
                    if decision.delay != nil && decision.abortStatus != nil { both += 1 }
                }
                #expect(abs(Double(delayed) / Double(Self.draws) - 0.10) <= 0.03)
                #expect(abs(Double(aborted) / Double(Self.draws) - 0.05) <= 0.03)
                // Independent draws: about 0.5 % get both.
                #expect(both > 0 && both < 150)
            }
        }

        @Test func edgesNeverAndAlways() {
            var rng = SeededRandom(seed: 3)
            #expect(FaultInjectionDecision.decide(nil, using: &rng).isNone)
            let never = FaultInjection(delay: .init(percent: 0, duration: .seconds(1)), abort: .init(percent: 0, status: 500))
            let always = FaultInjection(abort: .init(percent: 100, status: 418))
            for _ in 0..<1000 {
                #expect(FaultInjectionDecision.decide(never, using: &rng) == .noFault)
                #expect(FaultInjectionDecision.decide(always, using: &rng) == FaultInjectionDecision(delay: nil, abortStatus: 418))
            }
        }

        @Test func mirrorShareHolds() {
            var rng = SeededRandom(seed: 99)
            for percent in [10.0, 50.0, 90.0] {
                let mirror = TrafficMirror(subset: ["version": "v2"], percent: percent)
                var mirrored = 0
                for _ in 0..<Self.draws where MirrorDecision.shouldMirror(mirror, using: &rng) { mirrored += 1 }
                #expect(abs(Double(mirrored) / Double(Self.draws) * 100 - percent) <= 3, "\(percent)%: \(mirrored)")
            }
            #expect(!MirrorDecision.shouldMirror(nil, using: &rng))
            #expect(MirrorDecision.shouldMirror(TrafficMirror(subset: [:]), using: &rng))
        }
    }
}
