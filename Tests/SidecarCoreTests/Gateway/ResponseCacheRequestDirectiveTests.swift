import NIOCore
import Testing
@testable import SidecarCore

/// A request's `min-fresh`, `max-stale` and `only-if-cached` (RFC 9111 §5.2.1) against the
/// response's `must-revalidate`, `proxy-revalidate`, `no-cache` and `s-maxage`, on a manual
/// clock; and how invalid arguments read.
@Suite struct ResponseCacheRequestDirectiveTests {
    typealias Machine = ResponseCacheStateMachine<String>
    typealias Cases = ResponseCacheStateMachineTests

    static func lookup(_ machine: inout Machine, _ cacheControl: String?, at seconds: Int64, head: Bool = false) -> Machine.Lookup {
        machine.lookup(Cases.request(head: head, cacheControl: cacheControl), header: Cases.noHeaders, now: Cases.start + .seconds(seconds))
    }

    static func isStaleHit(_ lookup: Machine.Lookup, age expected: Int64? = nil) -> Bool {
        if case .hit(_, let age, _, _, true) = lookup { return expected == nil || age == expected }
        return false
    }

    static func isFreshHit(_ lookup: Machine.Lookup) -> Bool {
        if case .hit(_, _, _, _, false) = lookup { return true }
        return false
    }

    static func isRevalidate(_ lookup: Machine.Lookup) -> Bool {
        if case .revalidate = lookup { return true }
        return false
    }

    static func isNotCached(_ lookup: Machine.Lookup) -> Bool {
        if case .notCached = lookup { return true }
        return false
    }

    @Test func directivesAndTheirInvalidArguments() {
        let asked = CacheControl(["min-fresh=10, MAX-STALE=\"5\", only-if-cached"])
        #expect(asked.minFresh == 10 && asked.maxStale == 5 && asked.onlyIfCached)
        #expect(CacheControl(["max-stale"]).maxStale == .max, "no value: any staleness")
        // Invalid delta-seconds (RFC 9111 §1.2.2): min-fresh and max-stale are ignored ...
        for invalid in ["max-stale=abc", "max-stale=", "max-stale=-1", "min-fresh=-1", "min-fresh=1.5", "min-fresh", "min-fresh=abc"] {
            let parsed = CacheControl([invalid])
            #expect(parsed.minFresh == nil && parsed.maxStale == nil, "\(invalid)")
        }
        // ... max-age and s-maxage count as 0: stale at once (§4.2.1).
        #expect(CacheControl(["max-age=abc"]).maxAge == 0 && CacheControl(["s-maxage=-1"]).sharedMaxAge == 0)
        #expect(CacheControl(["min-fresh=99999999999999"]).minFresh == Int64(Int32.max))
        #expect(CacheControl(["must-revalidate"]).mustRevalidate && CacheControl(["Proxy-Revalidate"]).mustRevalidate)
        #expect(!CacheControl(["public, max-age=5"]).mustRevalidate)
    }

    /// min-fresh: used only while it stays fresh that much longer; else revalidated (or fetched
    /// without a validator), as a stale entry is.
    @Test func minFreshAsksForThatMuchFreshnessLeft() {
        var machine = Cases.machine(ttl: 60)
        Cases.fill(&machine, response: Cases.response(etag: "\"v1\""))
        #expect(Self.isFreshHit(Self.lookup(&machine, "min-fresh=15", at: 45)), "15 s left")
        #expect(Self.isRevalidate(Self.lookup(&machine, "min-fresh=16", at: 45)))
        machine.abandon(key: "api /a")
        #expect(Self.isFreshHit(Self.lookup(&machine, "min-fresh=-1", at: 45)), "an invalid min-fresh is ignored")
        #expect(!machine.wouldHit(Cases.request(cacheControl: "min-fresh=30"), header: Cases.noHeaders, now: Cases.start + .seconds(45)))

        var plain = Cases.machine(ttl: 60)
        Cases.fill(&plain)
        #expect(Cases.isFetch(Self.lookup(&plain, "min-fresh=30", at: 45)), "no validator: fetched again")
    }

    /// max-stale: a stale entry is served unvalidated (`stale`, with its true age) while its
    /// staleness is within the limit, any staleness without a value; a stale entry without a
    /// validator is kept for such a request (and dropped by the next plain one).
    @Test func maxStaleServesAStaleEntryWithinTheLimit() {
        var machine = Cases.machine(ttl: 60)
        Cases.fill(&machine, response: Cases.response(cacheControl: "max-age=10", etag: "\"v1\""))
        #expect(Self.isStaleHit(Self.lookup(&machine, "max-stale=5", at: 15), age: 15))
        #expect(Self.isStaleHit(Self.lookup(&machine, "max-stale", at: 10_000)))
        #expect(Self.isFreshHit(Self.lookup(&machine, "max-stale=5", at: 5)), "a fresh entry is a plain hit")
        #expect(machine.wouldHit(Cases.request(cacheControl: "max-stale=5"), header: Cases.noHeaders, now: Cases.start + .seconds(15)))
        for refused in ["max-stale=4", "max-stale=abc", nil, "max-stale=60, no-cache", "max-stale=60, max-age=12"] {
            #expect(Self.isRevalidate(Self.lookup(&machine, refused, at: 15)), "\(refused ?? "plain")")
            machine.abandon(key: "api /a")
        }

        // Stale on arrival by 5 s (age 15 > max-age 10): its staleness counts from there.
        var arrived = Cases.machine(ttl: 60)
        Cases.fill(&arrived, response: Cases.response(cacheControl: "max-age=10", etag: "\"v1\"", age: 15))
        #expect(Self.isStaleHit(Self.lookup(&arrived, "max-stale=6", at: 1), age: 16))
        #expect(Self.isRevalidate(Self.lookup(&arrived, "max-stale=5", at: 1)))

        var plain = Cases.machine(ttl: 10)
        Cases.fill(&plain)
        #expect(Self.isStaleHit(Self.lookup(&plain, "max-stale=30", at: 20)), "kept for a request that takes it stale")
        #expect(Self.isStaleHit(Self.lookup(&plain, "max-stale=30", at: 20, head: true)), "a HEAD too")
        #expect(Cases.isFetch(Self.lookup(&plain, nil, at: 20)), "dropped for a plain one")
        #expect(plain.storedBytes == 0)
    }

    /// must-revalidate, proxy-revalidate, no-cache, and s-maxage (a shared cache's
    /// proxy-revalidate, RFC 9111 §5.2.2.10) forbid serving stale: max-stale revalidates.
    @Test func responsesThatForbidStaleAreRevalidatedWhateverMaxStaleSays() {
        for directives in ["max-age=10, must-revalidate", "max-age=10, proxy-revalidate", "s-maxage=10", "no-cache"] {
            var machine = Cases.machine(ttl: 60)
            Cases.fill(&machine, response: Cases.response(cacheControl: directives, etag: "\"v1\""))
            #expect(Self.isRevalidate(Self.lookup(&machine, "max-stale", at: 15)), "\(directives)")
            machine.abandon(key: "api /a")
            #expect(Self.isNotCached(Self.lookup(&machine, "max-stale, only-if-cached", at: 15)), "\(directives)")
        }
        var fresh = Cases.machine(ttl: 60)
        Cases.fill(&fresh, response: Cases.response(cacheControl: "max-age=10, must-revalidate", etag: "\"v1\""))
        #expect(Self.isFreshHit(Self.lookup(&fresh, "max-stale", at: 5)), "must-revalidate binds only once stale")
    }

    /// only-if-cached: an entry the request may have answers it (fresh, or stale within
    /// max-stale); anything else is 504, and it neither starts a fetch nor waits for one.
    @Test func onlyIfCachedAnswersFromTheCacheOrNotAtAll() {
        var machine = Cases.machine(ttl: 60)
        #expect(Self.isNotCached(Self.lookup(&machine, "only-if-cached", at: 0)))
        #expect(!machine.isFetching("api /a"), "no fetch started")
        #expect(Self.isNotCached(Self.lookup(&machine, "only-if-cached", at: 0, head: true)))
        #expect(Cases.isFetch(Self.lookup(&machine, nil, at: 0)), "the next miss leads")
        #expect(Self.isNotCached(Self.lookup(&machine, "only-if-cached", at: 0)), "never waits for a fetch in flight")
        guard case .wait = Self.lookup(&machine, nil, at: 0) else {
            Issue.record("a plain miss did not wait for the fetch in flight")
            return
        }
        _ = machine.fill(
            key: "api /a", response: Cases.response(cacheControl: "max-age=10", etag: "\"v1\""), payload: "body", size: 100,
            header: Cases.noHeaders, now: Cases.start)
        #expect(Self.isFreshHit(Self.lookup(&machine, "only-if-cached", at: 5)))
        #expect(Self.isNotCached(Self.lookup(&machine, "only-if-cached", at: 15)), "stale: not without max-stale")
        #expect(!machine.isFetching("api /a"), "no revalidation started")
        #expect(Self.isStaleHit(Self.lookup(&machine, "only-if-cached, max-stale=10", at: 15)))
        #expect(Self.isNotCached(Self.lookup(&machine, "only-if-cached, no-cache", at: 5)), "no-cache needs the upstream")
        #expect(Self.isNotCached(Self.lookup(&machine, "only-if-cached, no-store", at: 5)), "no-store never takes an entry")
        let authorized = machine.lookup(
            Cases.request(authorization: true, cacheControl: "only-if-cached"), header: Cases.noHeaders, now: Cases.start)
        #expect(Self.isNotCached(authorized), "Authorization on a rule without allowAuthorization")
    }
}
