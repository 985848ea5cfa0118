@testable import ControlPlane
import Testing

/// Change -> acknowledgement times: the first unseen change counts, old history is dropped.
@Suite struct PushTrackerTests {
    let start = ContinuousClock.now

    @Test func theFirstChangeTheSidecarHadNotSeenCounts() {
        var tracker = PushTracker()
        tracker.changed(version: 3, at: start)
        tracker.changed(version: 5, at: start + .milliseconds(10))
        tracker.changed(version: 5, at: start + .milliseconds(50))  // the first time counts
        tracker.changed(version: 7, at: start + .milliseconds(20))
        let now = start + .milliseconds(100)
        #expect(tracker.pushDuration(applied: 7, previous: 3, now: now) == .milliseconds(90), "5 was the first unseen")
        #expect(tracker.pushDuration(applied: 7, previous: 5, now: now) == .milliseconds(80))
        #expect(tracker.pushDuration(applied: 5, previous: 4, now: now) == .milliseconds(90))
        #expect(tracker.pushDuration(applied: 7, previous: 7, now: now) == nil, "nothing new")
        #expect(tracker.pushDuration(applied: 7, previous: nil, now: now) == nil, "no previous version known")
        #expect(tracker.pushDuration(applied: 4, previous: 3, now: now) == nil, "no change between")
        #expect(tracker.pushDuration(applied: 9, previous: 7, now: now) == nil, "newer than anything recorded")
    }

    @Test func keepsOnlyTheLastChanges() {
        var tracker = PushTracker(capacity: 3)
        for version in 1...5 { tracker.changed(version: Int64(version), at: start + .milliseconds(version)) }
        let now = start + .milliseconds(10)
        #expect(tracker.pushDuration(applied: 5, previous: 0, now: now) == .milliseconds(7), "1 and 2 are forgotten: 3 is the first known")
        #expect(tracker.pushDuration(applied: 2, previous: 0, now: now) == nil)
    }
}
