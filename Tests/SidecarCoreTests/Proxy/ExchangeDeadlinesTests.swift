import NIOCore
import Testing

@testable import SidecarCore

/// The exchange's clocks as a pure decision: which deadline the one lazy timer waits for, and
/// what its firing means.
@Suite struct ExchangeDeadlinesTests {
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    static let idle = TimeAmount.seconds(30)

    func at(_ seconds: Int64) -> NIODeadline { Self.t0 + .seconds(seconds) }

    @Test func theTimerWaitsForTheEarliestClock() {
        var d = ExchangeDeadlines(bodyProgress: Self.t0)
        #expect(d.nextDue(requestComplete: true, bodyIdle: Self.idle) == nil, "nothing runs without a route")
        #expect(d.nextDue(requestComplete: false, bodyIdle: Self.idle) == at(30), "the body's idle clock")
        d.route = at(15)
        #expect(d.nextDue(requestComplete: false, bodyIdle: Self.idle) == at(15))
        d.currentTry = at(2)
        #expect(d.nextDue(requestComplete: true, bodyIdle: Self.idle) == at(2))
        d.stop()
        #expect(d.nextDue(requestComplete: true, bodyIdle: Self.idle) == nil)
    }

    @Test func theRouteTimeoutWinsOverEverythingDueWithIt() {
        var d = ExchangeDeadlines(bodyProgress: Self.t0)
        d.route = at(10)
        d.currentTry = at(5)
        let expiry = d.expiry(at: at(40), requestComplete: false, bodyIdle: Self.idle, readingBody: true, responseStarted: false)
        #expect(expiry == .route)
        #expect(d.expiry(at: at(9), requestComplete: true, bodyIdle: Self.idle, readingBody: true, responseStarted: false) == .currentTry)
        #expect(d.expiry(at: at(4), requestComplete: true, bodyIdle: Self.idle, readingBody: true, responseStarted: false) == .none)
    }

    @Test func aStalledBodyIsTheCallersOnlyWhileTheSidecarReadsIt() {
        let d = ExchangeDeadlines(bodyProgress: Self.t0)
        #expect(d.expiry(at: at(29), requestComplete: false, bodyIdle: Self.idle, readingBody: true, responseStarted: false) == .none)
        #expect(d.expiry(at: at(30), requestComplete: false, bodyIdle: Self.idle, readingBody: true, responseStarted: false) == .bodyStalled)
        #expect(d.expiry(at: at(30), requestComplete: false, bodyIdle: Self.idle, readingBody: false, responseStarted: false)
            == .bodyWaitNotTheCallers)
        #expect(d.expiry(at: at(30), requestComplete: true, bodyIdle: Self.idle, readingBody: true, responseStarted: false) == .none)
    }

    @Test func thePerTryTimeoutEndsWithTheResponseHead() {
        var d = ExchangeDeadlines(bodyProgress: Self.t0)
        d.currentTry = at(1)
        #expect(d.expiry(at: at(1), requestComplete: true, bodyIdle: Self.idle, readingBody: false, responseStarted: false) == .currentTry)
        #expect(d.expiry(at: at(1), requestComplete: true, bodyIdle: Self.idle, readingBody: false, responseStarted: true) == .none)
    }
}
