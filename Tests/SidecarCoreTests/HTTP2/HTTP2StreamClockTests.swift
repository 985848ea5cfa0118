import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// One timer per connection for its streams' deadlines: each stream is told once, when its own
/// deadline passes, whatever the others did.
@Suite struct HTTP2StreamClockTests {
    final class Stream: HTTP2DeadlineOwner {
        let name: String
        let log: Log
        var onPassed: (() -> Void)?

        init(_ name: String, log: Log) {
            self.name = name
            self.log = log
        }

        func deadlinePassed() {
            log.passed.append(name)
            onPassed?()
        }
    }

    final class Log {
        var passed: [String] = []
    }

    let loop = EmbeddedEventLoop()
    let clock: HTTP2StreamClock
    let log = Log()

    init() {
        clock = HTTP2StreamClock(eventLoop: loop)
    }

    @Test func eachStreamIsToldWhenItsOwnDeadlinePasses() {
        let (a, b) = (Stream("a", log: log), Stream("b", log: log))
        clock.schedule(a, at: loop.now + .milliseconds(100))
        clock.schedule(b, at: loop.now + .milliseconds(50))
        loop.advanceTime(by: .milliseconds(49))
        #expect(log.passed.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(log.passed == ["b"])
        loop.advanceTime(by: .milliseconds(50))
        #expect(log.passed == ["b", "a"])
        #expect(clock.count == 0)
    }

    @Test func aCancelledDeadlineIsNeverToldAndTheNextStillIs() {
        let (a, b) = (Stream("a", log: log), Stream("b", log: log))
        clock.schedule(a, at: loop.now + .milliseconds(10))
        clock.schedule(b, at: loop.now + .milliseconds(100))
        clock.cancel(a)  // the stream ended first: the timer stays at 10 ms, finds nothing, re-arms
        loop.advanceTime(by: .milliseconds(20))
        #expect(log.passed.isEmpty)
        loop.advanceTime(by: .milliseconds(80))
        #expect(log.passed == ["b"])
    }

    @Test func scheduleReplacesAStreamsDeadlineEarlierOrLater() {
        let a = Stream("a", log: log)
        clock.schedule(a, at: loop.now + .milliseconds(100))
        clock.schedule(a, at: loop.now + .milliseconds(30))
        loop.advanceTime(by: .milliseconds(30))
        #expect(log.passed == ["a"])
        clock.schedule(a, at: loop.now + .milliseconds(10))
        clock.schedule(a, at: loop.now + .milliseconds(50))
        loop.advanceTime(by: .milliseconds(10))
        #expect(log.passed == ["a"], "the later deadline replaced the earlier one")
        loop.advanceTime(by: .milliseconds(40))
        #expect(log.passed == ["a", "a"])
    }

    @Test func aStreamToldMayScheduleAgain() {
        let a = Stream("a", log: log)
        a.onPassed = { [clock, loop] in
            if a.log.passed.count == 1 { clock.schedule(a, at: loop.now + .milliseconds(20)) }
        }
        clock.schedule(a, at: loop.now + .milliseconds(10))
        loop.advanceTime(by: .milliseconds(10))
        loop.advanceTime(by: .milliseconds(20))
        #expect(log.passed == ["a", "a"])
        #expect(clock.count == 0)
        a.onPassed = nil
    }
}
