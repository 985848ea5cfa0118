import NIOCore
import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// Passive ejection: thresholds, resets, growing ejection time, the share cap, return, panic.
    @Suite struct OutlierDetectorStateMachineTests {
        typealias Detector = OutlierDetectorStateMachine<Int>

        static func detector(endpoints: Int, maxPercent: Double = 10) -> Detector {
            Detector(
                OutlierDetection(
                    consecutive5xx: 5, consecutiveGatewayErrors: 5, interval: .seconds(10),
                    baseEjectionTime: .seconds(30), maxEjectionPercent: maxPercent),
                endpoints: Array(0..<endpoints))
        }

        /// Records `count` outcomes; returns the ejection if one happened.
        static func fail(
            _ detector: inout Detector, _ endpoint: Int, _ outcome: Detector.Outcome = .status(500), count: Int = 5,
            now: NIODeadline
        ) -> Detector.Action? {
            var action: Detector.Action?
            for _ in 0..<count {
                if let next = detector.record(outcome, for: endpoint, now: now) { action = next }
            }
            return action
        }

        @Test func ejectsAfterFiveConsecutive5xxNotFour() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            #expect(Self.fail(&detector, 3, count: 4, now: clock.now) == nil)
            #expect(!detector.isEjected(3))
            #expect(detector.record(.status(500), for: 3, now: clock.now) == .eject(3, until: clock.now + .seconds(30)))
            #expect(detector.isEjected(3))
            #expect(detector.shouldSkip(3))
            #expect(detector.ejectedCount == 1)
            #expect(detector.healthyCount == 9)
        }

        @Test func gatewayErrorsAndConnectFailuresCountToo() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            #expect(Self.fail(&detector, 1, .connectFailure, now: clock.now) != nil)
            // Mixed 502/503/504 keep one gateway-error run going.
            for code in [502, 503, 504, 502] { #expect(detector.record(.status(code), for: 2, now: clock.now) == nil) }
            // (10 % of 10 is one endpoint: endpoint 1 holds it, so 2 keeps counting but stays.)
            #expect(detector.record(.status(504), for: 2, now: clock.now) == nil)
            #expect(!detector.isEjected(2))
        }

        @Test func successResetsTheCount() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            #expect(Self.fail(&detector, 0, count: 4, now: clock.now) == nil)
            #expect(detector.record(.status(200), for: 0, now: clock.now) == nil)
            #expect(Self.fail(&detector, 0, count: 4, now: clock.now) == nil)
            #expect(!detector.isEjected(0))
            // A 4xx is a success for outlier purposes.
            #expect(detector.record(.status(404), for: 0, now: clock.now) == nil)
            #expect(Self.fail(&detector, 0, count: 4, now: clock.now) == nil)
            #expect(Self.fail(&detector, 0, count: 1, now: clock.now) != nil)
        }

        /// A success on one endpoint leaves another's streak running (successes skip the lookup
        /// only while no endpoint has a streak), and streaks end with ejection and adoption.
        @Test func aSuccessElsewhereKeepsAStreakAndStreaksEndWithEjection() {
            var clock = ManualClock()
            var detector = Self.detector(endpoints: 10, maxPercent: 100)
            #expect(Self.fail(&detector, 0, count: 4, now: clock.now) == nil)
            #expect(Self.fail(&detector, 1, count: 4, now: clock.now) == nil)
            #expect(detector.record(.status(200), for: 2, now: clock.now) == nil)
            #expect(detector.record(.status(200), for: 1, now: clock.now) == nil)  // 1's streak ends here
            #expect(Self.fail(&detector, 0, count: 1, now: clock.now) == .eject(0, until: clock.now + .seconds(30)))
            #expect(Self.fail(&detector, 1, count: 4, now: clock.now) == nil)
            #expect(detector.adoptEjection(of: 1, until: clock.now + .seconds(30)) != nil)
            clock.advance(by: .seconds(31))
            _ = detector.tick(now: clock.now)
            // No streak is left anywhere: after successes, five failures are needed again.
            #expect(detector.record(.status(200), for: 3, now: clock.now) == nil)
            #expect(Self.fail(&detector, 1, count: 4, now: clock.now) == nil)
            #expect(Self.fail(&detector, 1, count: 1, now: clock.now) != nil)
        }

        @Test func a500BreaksAGatewayErrorRunButCountsAs5xx() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            #expect(Self.fail(&detector, 0, .status(503), count: 4, now: clock.now) == nil)
            // 500: gateway run resets to 0, 5xx run reaches 5 -> ejected by the 5xx rule.
            #expect(detector.record(.status(500), for: 0, now: clock.now) != nil)
        }

        @Test func ejectionTimeGrowsWithEachEjectionAndReturnsAfterIt() {
            var clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            #expect(Self.fail(&detector, 7, now: clock.now) == .eject(7, until: clock.now + .seconds(30)))
            #expect(detector.nextUnejection == clock.now + .seconds(30))
            clock.advance(by: .seconds(29))
            #expect(detector.tick(now: clock.now, isIntervalTick: false).isEmpty)
            // Outcomes for an ejected endpoint (in-flight stragglers) are ignored.
            #expect(detector.record(.status(500), for: 7, now: clock.now) == nil)
            clock.advance(by: .seconds(1))
            #expect(detector.tick(now: clock.now, isIntervalTick: false) == [.uneject(7)])
            #expect(!detector.isEjected(7))
            #expect(detector.ejectedCount == 0)
            // Second ejection: 2 x 30 s; third: 90 s.
            #expect(Self.fail(&detector, 7, now: clock.now) == .eject(7, until: clock.now + .seconds(60)))
            clock.advance(by: .seconds(60))
            #expect(detector.tick(now: clock.now, isIntervalTick: false) == [.uneject(7)])
            #expect(Self.fail(&detector, 7, now: clock.now) == .eject(7, until: clock.now + .seconds(90)))
            #expect(detector.ejections(7) == 3)
        }

        @Test func ejectionTimeIsCappedAndDecaysWhileHealthy() {
            var clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            #expect(detector.ejectionTime(forEjection: 20) == .seconds(300))
            _ = Self.fail(&detector, 1, now: clock.now)
            clock.advance(by: .seconds(30))
            #expect(detector.tick(now: clock.now) == [.uneject(1)])
            #expect(detector.ejections(1) == 1)  // not decayed on the tick that returned it
            clock.advance(by: .seconds(10))
            #expect(detector.tick(now: clock.now).isEmpty)
            #expect(detector.ejections(1) == 0)
            #expect(Self.fail(&detector, 1, now: clock.now) == .eject(1, until: clock.now + .seconds(30)))
        }

        @Test func atMostMaxPercentAreEjectedButAlwaysOne() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 20)  // 10 % of 20: two
            var ejected = 0
            for endpoint in 0..<20 where Self.fail(&detector, endpoint, now: clock.now) != nil { ejected += 1 }
            #expect(ejected == 2)
            #expect(detector.ejectedCount == 2)

            var small = Self.detector(endpoints: 3)  // 10 % of 3 is < 1, yet one may go
            #expect(Self.fail(&small, 0, now: clock.now) != nil)
            #expect(Self.fail(&small, 1, now: clock.now) == nil)
            #expect(small.ejectedCount == 1)
        }

        @Test func aFailingEndpointOverTheCapIsEjectedWhenRoomFrees() {
            var clock = ManualClock()
            var detector = Self.detector(endpoints: 3)
            _ = Self.fail(&detector, 0, now: clock.now)
            #expect(Self.fail(&detector, 1, now: clock.now) == nil)
            clock.advance(by: .seconds(30))
            #expect(detector.tick(now: clock.now) == [.uneject(0)])
            // Endpoint 1's run was kept: its next failure ejects it.
            #expect(detector.record(.status(500), for: 1, now: clock.now) != nil)
        }

        @Test func panicWhenFewerThanHalfAreHealthy() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 4, maxPercent: 100)
            _ = Self.fail(&detector, 0, now: clock.now)
            #expect(!detector.isPanicking)  // 3 of 4 healthy
            _ = Self.fail(&detector, 1, now: clock.now)
            #expect(!detector.isPanicking)  // exactly 50 %
            #expect(detector.shouldSkip(1))
            _ = Self.fail(&detector, 2, now: clock.now)
            #expect(detector.isPanicking)  // 1 of 4
            #expect(!detector.shouldSkip(1))  // the balancer uses all endpoints
            #expect(detector.isEjected(1))

            var single = Self.detector(endpoints: 1)
            #expect(Self.fail(&single, 0, now: clock.now) != nil)
            #expect(single.isPanicking)
            #expect(!single.shouldSkip(0))
        }

        @Test func endpointChangesKeepStateAndReleaseRemovedEjections() {
            let clock = ManualClock()
            var detector = Self.detector(endpoints: 10)
            _ = Self.fail(&detector, 0, now: clock.now)
            _ = Self.fail(&detector, 1, count: 4, now: clock.now)
            let actions = detector.setEndpoints([1, 2, 3])
            #expect(actions == [.uneject(0)])
            #expect(detector.ejectedCount == 0)
            #expect(detector.endpointCount == 3)
            #expect(detector.record(.status(500), for: 1, now: clock.now) != nil)  // run of 5 kept
            #expect(detector.record(.status(500), for: 0, now: clock.now) == nil)  // unknown now
        }

        @Test func anotherLoopsEjectionIsAdoptedWithoutTheCapAndKeepsTheMultiplierInStep() {
            var clock = ManualClock()
            var here = Self.detector(endpoints: 10)
            var there = Self.detector(endpoints: 10)
            guard case .eject(let endpoint, let until)? = Self.fail(&there, 4, now: clock.now) else {
                Issue.record("no ejection")
                return
            }
            // Endpoint 2 already fills this loop's 10 % share: the adoption ignores the cap.
            _ = Self.fail(&here, 2, now: clock.now)
            #expect(here.adoptEjection(of: endpoint, until: until) == .eject(4, until: until))
            #expect(here.adoptEjection(of: endpoint, until: until) == nil, "already ejected")
            #expect(here.shouldSkip(4))
            #expect(here.ejections(4) == 1)
            clock.advance(by: .seconds(30))
            #expect(here.tick(now: clock.now, isIntervalTick: false).contains(.uneject(4)))
            // The next ejection here lasts twice as long, as it does on the loop that found it.
            #expect(Self.fail(&here, 4, now: clock.now) == .eject(4, until: clock.now + .seconds(60)))
        }
    }
}
