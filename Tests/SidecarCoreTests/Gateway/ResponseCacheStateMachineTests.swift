import NIOCore
import Testing
@testable import SidecarCore

/// The response cache's decisions on a manual clock: freshness and `age`, `Cache-Control` on
/// both sides, `Authorization`, `Vary` variants, `ETag` / `If-None-Match`, the byte bound with
/// least-recently-used eviction, and one fetch per key with bounded waiting.
@Suite struct ResponseCacheStateMachineTests {
    typealias Machine = ResponseCacheStateMachine<String>

    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func machine(ttl: Int64 = 30, maxBytes: Int = 1000, maxWaiters: Int = 1024, allowAuthorization: Bool = false) -> Machine {
        Machine(limits: .init(ttl: .seconds(ttl), maxBytes: maxBytes, maxWaiters: maxWaiters, allowAuthorization: allowAuthorization))
    }

    static func request(
        _ key: String = "api /a", head: Bool = false, authorization: Bool = false, cacheControl: String? = nil,
        ifNoneMatch: String? = nil
    ) -> Machine.Request {
        .init(key: key, isHead: head, hasAuthorization: authorization, cacheControl: CacheControl(cacheControl.map { [$0] } ?? []),
              ifNoneMatch: ifNoneMatch)
    }

    static func response(
        status: Int = 200, cacheControl: String? = nil, vary: [String] = [], etag: String? = nil, age: Int64 = 0,
        cookie: Bool = false, lastModified: String? = nil, expires: Int64? = nil
    ) -> Machine.Response {
        .init(status: status, cacheControl: CacheControl(cacheControl.map { [$0] } ?? []), vary: vary, etag: etag, age: age,
              setsCookie: cookie, lastModified: lastModified, expires: expires)
    }

    static func noHeaders(_ name: String) -> String? { nil }

    /// Leads the fetch of `key` and fills it with `response`.
    @discardableResult
    static func fill(
        _ machine: inout Machine, _ key: String = "api /a", response: Machine.Response = response(), payload: String = "body",
        size: Int = 100, header: (String) -> String? = noHeaders, at now: NIODeadline = start
    ) -> Result<Int, Machine.NotStored> {
        guard case .fetch = machine.lookup(request(key), header: header, now: now) else {
            Issue.record("\(key) did not lead a fetch")
            return .failure(.status)
        }
        return machine.fill(key: key, response: response, payload: payload, size: size, header: header, now: now)
    }

    static func isHit(_ lookup: Machine.Lookup, _ payload: String? = nil) -> Bool {
        if case .hit(let stored, _, _, _, _) = lookup { return payload == nil || stored == payload }
        return false
    }

    static func isFetch(_ lookup: Machine.Lookup) -> Bool {
        if case .fetch = lookup { return true }
        return false
    }

    @Test func aStoredResponseIsAHitWithItsAgeUntilTheTTLPasses() {
        var machine = Self.machine(ttl: 30)
        Self.fill(&machine)
        guard case .hit(let payload, let age, _, let notModified, _) = machine.lookup(
            Self.request(), header: Self.noHeaders, now: Self.start + .seconds(12))
        else {
            Issue.record("no hit")
            return
        }
        #expect(payload == "body" && age == 12 && !notModified)
        #expect(Self.isFetch(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start + .seconds(30))))
        #expect(machine.storedBytes == 0, "the stale entry is dropped")
    }

    @Test func maxAgeAndSMaxAgeShortenTheTTLAndAReceivedAgeCounts() {
        var machine = Self.machine(ttl: 30)
        Self.fill(&machine, response: Self.response(cacheControl: "public, max-age=60, s-maxage=10"))
        #expect(Self.isHit(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start + .seconds(9))))
        #expect(!Self.isHit(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start + .seconds(10))))

        var aged = Self.machine(ttl: 30)
        Self.fill(&aged, response: Self.response(cacheControl: "max-age=20", age: 15))
        guard case .hit(_, let age, _, _, _) = aged.lookup(Self.request(), header: Self.noHeaders, now: Self.start + .seconds(1)) else {
            Issue.record("no hit")
            return
        }
        #expect(age == 16)
        #expect(!Self.isHit(aged.lookup(Self.request(), header: Self.noHeaders, now: Self.start + .seconds(5))))
        var old = Self.machine()
        #expect(Self.fill(&old, response: Self.response(cacheControl: "max-age=20", age: 20)) == .failure(.stale))
    }

    @Test func responsesASharedCacheMustNotKeepAreRefused() {
        let refused: [(Machine.Response, Machine.NotStored)] = [
            (Self.response(status: 500), .status),
            (Self.response(cacheControl: "no-store"), .noStore),
            (Self.response(cacheControl: "private, max-age=60"), .isPrivate),
            (Self.response(cacheControl: "no-cache"), .noCache),
            (Self.response(cacheControl: "max-age=0"), .stale),
            (Self.response(vary: ["*"]), .varyStar),
            (Self.response(cookie: true), .setCookie),
        ]
        for (response, reason) in refused {
            var machine = Self.machine()
            #expect(Self.fill(&machine, response: response) == .failure(reason))
            #expect(machine.entryCount == 0)
            #expect(Self.isFetch(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start)), "the fetch ended")
        }
    }

    @Test func noStoreOnTheRequestAndAuthorizationBypass() {
        var machine = Self.machine()
        Self.fill(&machine)
        guard case .bypass(.requestDirective) = machine.lookup(Self.request(cacheControl: "no-store"), header: Self.noHeaders, now: Self.start)
        else {
            Issue.record("no-store used the cache")
            return
        }
        guard case .bypass(.authorization) = machine.lookup(Self.request(authorization: true), header: Self.noHeaders, now: Self.start)
        else {
            Issue.record("Authorization used the cache")
            return
        }
        var opted = Self.machine(allowAuthorization: true)
        Self.fill(&opted)
        #expect(Self.isHit(opted.lookup(Self.request(authorization: true), header: Self.noHeaders, now: Self.start)))
    }

    @Test func aHeadIsAnsweredFromAGetEntryButNeverFetchesOne() {
        var machine = Self.machine()
        guard case .bypass(.headMiss) = machine.lookup(Self.request(head: true), header: Self.noHeaders, now: Self.start) else {
            Issue.record("a HEAD led a fetch")
            return
        }
        Self.fill(&machine)
        #expect(Self.isHit(machine.lookup(Self.request(head: true), header: Self.noHeaders, now: Self.start)))
    }

    @Test func varyKeepsOneEntryPerValueOfTheNamedHeaders() {
        var machine = Self.machine()
        let english: (String) -> String? = { $0 == "accept-language" ? "en" : nil }
        let german: (String) -> String? = { $0 == "accept-language" ? "de" : nil }
        Self.fill(&machine, response: Self.response(vary: ["accept-language"]), payload: "hello", header: english)
        #expect(Self.isHit(machine.lookup(Self.request(), header: english, now: Self.start), "hello"))
        #expect(Self.isFetch(machine.lookup(Self.request(), header: german, now: Self.start)))
        _ = machine.fill(
            key: "api /a", response: Self.response(vary: ["accept-language"]), payload: "hallo", size: 100, header: german, now: Self.start)
        #expect(machine.entryCount == 2)
        #expect(Self.isHit(machine.lookup(Self.request(), header: german, now: Self.start), "hallo"))
        #expect(Self.isHit(machine.lookup(Self.request(), header: english, now: Self.start), "hello"))
        #expect(!Self.isHit(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start)), "no language is a third variant")
    }

    @Test func ifNoneMatchAgainstTheETagAsksFor304() {
        var machine = Self.machine()
        Self.fill(&machine, response: Self.response(etag: "\"v1\""))
        for (asked, expected) in [("\"v1\"", true), ("W/\"v1\"", true), ("\"v0\", \"v1\"", true), ("*", true), ("\"v2\"", false)] {
            guard case .hit(_, _, let etag, let notModified, _) = machine.lookup(
                Self.request(ifNoneMatch: asked), header: Self.noHeaders, now: Self.start)
            else {
                Issue.record("no hit for \(asked)")
                continue
            }
            #expect(etag == "\"v1\"")
            #expect(notModified == expected, "If-None-Match: \(asked)")
        }
    }

    @Test func theByteBoundRefusesTooLargeEntriesAndEvictsTheLeastRecentlyUsed() {
        var machine = Self.machine(maxBytes: 250)
        #expect(Self.fill(&machine, "api /big", size: 251) == .failure(.tooLarge))
        Self.fill(&machine, "api /1", size: 100, at: Self.start)
        Self.fill(&machine, "api /2", size: 100, at: Self.start)
        // /1 is used again, so /2 is now the least recently used.
        #expect(Self.isHit(machine.lookup(Self.request("api /1"), header: Self.noHeaders, now: Self.start)))
        #expect(Self.fill(&machine, "api /3", size: 100) == .success(1))
        #expect(machine.storedBytes == 200)
        #expect(Self.isHit(machine.lookup(Self.request("api /1"), header: Self.noHeaders, now: Self.start)))
        #expect(Self.isHit(machine.lookup(Self.request("api /3"), header: Self.noHeaders, now: Self.start)))
        #expect(Self.isFetch(machine.lookup(Self.request("api /2"), header: Self.noHeaders, now: Self.start)))
    }

    @Test func concurrentMissesWaitForOneFetchThenLookUpAgain() {
        var machine = Self.machine(maxWaiters: 2)
        #expect(Self.isFetch(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start)))
        for _ in 0..<2 {
            guard case .wait = machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start) else {
                Issue.record("a second miss did not wait")
                return
            }
        }
        guard case .bypass(.waitersFull) = machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start) else {
            Issue.record("waiting is unbounded")
            return
        }
        #expect(Self.isFetch(machine.lookup(Self.request("api /other"), header: Self.noHeaders, now: Self.start)),
                "another key leads its own fetch")
        _ = machine.fill(key: "api /a", response: Self.response(), payload: "body", size: 1, header: Self.noHeaders, now: Self.start)
        #expect(Self.isHit(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start, mayWait: false, mayLead: false)))
        #expect(Self.isFetch(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start + .seconds(31))),
                "once stale, the next miss leads again")
    }

    @Test func afterAFailedFetchWaitersGoUpstreamAloneAndTheNextMissLeads() {
        var machine = Self.machine()
        #expect(Self.isFetch(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start)))
        _ = machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start)
        machine.abandon(key: "api /a")
        guard case .bypass(.afterWait) = machine.lookup(
            Self.request(), header: Self.noHeaders, now: Self.start, mayWait: false, mayLead: false)
        else {
            Issue.record("a woken waiter led or waited again")
            return
        }
        #expect(Self.isFetch(machine.lookup(Self.request(), header: Self.noHeaders, now: Self.start)))
    }

    @Test func cacheControlParsing() {
        let parsed = CacheControl(["Public, MAX-AGE=\"60\"", "s-maxage=abc, no-cache=\"set-cookie\", private"])
        #expect(parsed.maxAge == 60 && parsed.sharedMaxAge == 0 && parsed.noCache && parsed.isPrivate && !parsed.noStore)
        #expect(CacheControl(["max-age=99999999999999"]).maxAge == Int64(Int32.max))
    }
}
