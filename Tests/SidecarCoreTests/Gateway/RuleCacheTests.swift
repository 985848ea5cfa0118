import NIOCore
import NIOEmbedded
import Testing
@testable import SidecarCore

/// One rule's store shared by event loops: a request on loop B waits for loop A's fetch of the
/// same key and is resumed by a task on B (not on A's thread), its timeout runs on B, and a
/// fetch that ended before the waiter registered resumes it at once.
@Suite struct RuleCacheTests {
    static let key = "api /a"

    static func store() -> RuleCache {
        RuleCache(policy: GatewayCachePolicy(ttl: .seconds(30), maxBytes: 1000), counters: [:])
    }

    static func lookup(_ cache: RuleCache, on loop: EmbeddedEventLoop) -> RuleCache.StateMachine.Lookup {
        cache.lookup(
            .init(key: key, isHead: false, hasAuthorization: false, cacheControl: CacheControl(), ifNoneMatch: nil), header: { _ in nil }, now: loop.now, afterWaitSince: nil)
    }

    @Test func aWaiterOnAnotherLoopIsResumedOnItsOwnLoopOnce() throws {
        let (a, b) = (EmbeddedEventLoop(), EmbeddedEventLoop())
        let cache = Self.store()
        guard case .fetch = Self.lookup(cache, on: a), case .wait = Self.lookup(cache, on: b) else {
            Issue.record("not one fetch and one wait")
            return
        }
        var resumed: [Bool] = []
        cache.wait(for: Self.key, on: b) { resumed.append($0) }
        cache.finish(Self.key) { $0.abandon(key: Self.key) }  // loop A's fetch ends
        #expect(resumed.isEmpty, "resumed on the fetching loop's call, not as a task on its own")
        b.run()
        #expect(resumed == [true])
        b.advanceTime(by: GatewayResponseCaches.waitTimeout)
        #expect(resumed == [true], "the timeout was cancelled")
        try a.syncShutdownGracefully()
        try b.syncShutdownGracefully()
    }

    @Test func aWaitTimesOutOnTheWaitersLoopAndAnEndedFetchResumesAtOnce() throws {
        let (a, b) = (EmbeddedEventLoop(), EmbeddedEventLoop())
        let cache = Self.store()
        _ = Self.lookup(cache, on: a)
        _ = Self.lookup(cache, on: b)
        var resumed: [Bool] = []
        cache.wait(for: Self.key, on: b) { resumed.append($0) }
        a.advanceTime(by: GatewayResponseCaches.waitTimeout)
        #expect(resumed.isEmpty, "the timer is the waiter's loop's")
        b.advanceTime(by: GatewayResponseCaches.waitTimeout)
        #expect(resumed == [false])
        cache.finish(Self.key) { $0.abandon(key: Self.key) }
        b.run()
        #expect(resumed == [false], "fired once")

        // The machine said wait, but the fetch ended before the waiter registered.
        _ = Self.lookup(cache, on: a)
        _ = Self.lookup(cache, on: b)
        cache.finish(Self.key) { $0.abandon(key: Self.key) }
        var late: [Bool] = []
        cache.wait(for: Self.key, on: b) { late.append($0) }
        b.run()
        #expect(late == [true])
        try a.syncShutdownGracefully()
        try b.syncShutdownGracefully()
    }
}
