import NIOCore
import Testing
@testable import SidecarCore

/// The response cache's revalidation decisions on a manual clock (a `no-cache` or stale entry
/// with a validator is revalidated by one request while the others wait, and served to them
/// once refreshed), freshness from `Expires`, and HTTP-date parsing.
@Suite struct ResponseCacheRevalidationTests {
    typealias Machine = ResponseCacheStateMachine<String>
    typealias Cases = ResponseCacheStateMachineTests

    static func lookup(_ machine: inout Machine, at seconds: Int64 = 0, validatedSince: NIODeadline? = nil) -> Machine.Lookup {
        let waited = validatedSince != nil
        return machine.lookup(
            Cases.request(), header: Cases.noHeaders, now: Cases.start + .seconds(seconds), mayWait: !waited, mayLead: !waited,
            validatedSince: validatedSince)
    }

    @Test func aNoCacheEntryWithAnETagIsStoredAndRevalidatedOnEveryUse() {
        var machine = Cases.machine()
        #expect(Cases.fill(&machine, response: Cases.response(cacheControl: "no-cache", etag: "\"v1\"")) == .success(0))
        guard case .revalidate(let payload, let etag, let lastModified) = Self.lookup(&machine) else {
            Issue.record("a no-cache entry was served without revalidation")
            return
        }
        #expect(payload == "body" && etag == "\"v1\"" && lastModified == nil)
        guard case .wait = Self.lookup(&machine) else {
            Issue.record("a second request did not wait for the revalidation")
            return
        }
        guard case .bypass(.headMiss) = machine.lookup(Cases.request(head: true), header: Cases.noHeaders, now: Cases.start) else {
            Issue.record("a HEAD was answered from an entry that needs revalidation")
            return
        }
        // The 304 refreshes it (the entry's payload filled again); the waiter takes it.
        let refreshedAt = Cases.start + .seconds(1)
        _ = machine.fill(
            key: "api /a", response: Cases.response(cacheControl: "no-cache", etag: "\"v1\""), payload: "body", size: 100,
            header: Cases.noHeaders, now: refreshedAt)
        #expect(Cases.isHit(Self.lookup(&machine, at: 1, validatedSince: Cases.start), "body"))
        #expect(machine.storedBytes == 100)
        // A waiter from before an older validation is not served: it goes upstream alone.
        guard case .bypass(.afterWait) = Self.lookup(&machine, at: 2, validatedSince: Cases.start + .seconds(2)) else {
            Issue.record("an entry validated before the wait began was served")
            return
        }
    }

    @Test func aStaleEntryWithAValidatorIsKeptForRevalidationOneWithoutIsDropped() {
        var machine = Cases.machine(ttl: 30)
        Cases.fill(&machine, "api /a", response: Cases.response(etag: "\"v1\""))
        Cases.fill(&machine, "api /b", response: Cases.response())
        guard case .revalidate(_, let etag, _) = Self.lookup(&machine, at: 31) else {
            Issue.record("a stale entry with an ETag was not revalidated")
            return
        }
        #expect(etag == "\"v1\"")
        #expect(Cases.isFetch(machine.lookup(Cases.request("api /b"), header: Cases.noHeaders, now: Cases.start + .seconds(31))))
        #expect(machine.storedBytes == 100, "the stale entry without a validator is dropped")
        // A failed revalidation leaves the stale entry; the next request revalidates again.
        machine.abandon(key: "api /a")
        guard case .revalidate = Self.lookup(&machine, at: 32) else {
            Issue.record("no revalidation after a failed one")
            return
        }
    }

    /// RFC 9111 §5.2.1: a request's `no-cache` (and `max-age=0`, and `max-age` below the entry's
    /// age) may not be answered from an entry unvalidated. One with a validator is revalidated
    /// (the others asking wait for it, then take it), one without is fetched again; a fresh
    /// entry still answers plain requests meanwhile.
    @Test func aRequestsNoCacheOrMaxAgeRevalidatesAFreshEntry() {
        for directive in ["no-cache", "max-age=0", "max-age=5", "max-age=60, no-cache"] {
            var machine = Cases.machine(ttl: 60)
            Cases.fill(&machine, response: Cases.response(etag: "\"v1\""))
            let asked = Cases.request(cacheControl: directive)
            let at = Cases.start + .seconds(10)
            #expect(!machine.wouldHit(asked, header: Cases.noHeaders, now: at), "\(directive): /explain says it goes upstream")
            guard case .revalidate(_, "\"v1\"", nil) = machine.lookup(asked, header: Cases.noHeaders, now: at) else {
                Issue.record("\(directive): a fresh entry was used unvalidated")
                continue
            }
            guard case .wait = machine.lookup(asked, header: Cases.noHeaders, now: at) else {
                Issue.record("\(directive): a second request did not wait for the revalidation")
                continue
            }
            // Validated after the waiter came: it takes the entry (its `no-cache` is satisfied).
            _ = machine.fill(key: "api /a", response: Cases.response(etag: "\"v1\""), payload: "body", size: 100, header: Cases.noHeaders, now: at)
            #expect(Cases.isHit(machine.lookup(asked, header: Cases.noHeaders, now: at, mayWait: false, mayLead: false, validatedSince: at)))
            #expect(Cases.isHit(machine.lookup(Cases.request(), header: Cases.noHeaders, now: at)), "a plain request takes the fresh entry")
        }
        var young = Cases.machine(ttl: 60)
        Cases.fill(&young, response: Cases.response(etag: "\"v1\""))
        #expect(Cases.isHit(young.lookup(Cases.request(cacheControl: "max-age=5"), header: Cases.noHeaders, now: Cases.start + .seconds(5))))

        // No validator: fetched again, the fill replacing the entry.
        var plain = Cases.machine(ttl: 60)
        Cases.fill(&plain, response: Cases.response(), payload: "old")
        #expect(Cases.isFetch(plain.lookup(Cases.request(cacheControl: "no-cache"), header: Cases.noHeaders, now: Cases.start)))
        guard case .wait = plain.lookup(Cases.request(cacheControl: "no-cache"), header: Cases.noHeaders, now: Cases.start) else {
            Issue.record("concurrent no-cache requests both went upstream")
            return
        }
        _ = plain.fill(key: "api /a", response: Cases.response(), payload: "new", size: 100, header: Cases.noHeaders, now: Cases.start)
        #expect(Cases.isHit(plain.lookup(Cases.request(), header: Cases.noHeaders, now: Cases.start), "new") && plain.entryCount == 1)
        guard case .bypass(.headMiss) = plain.lookup(Cases.request(head: true, cacheControl: "no-cache"), header: Cases.noHeaders, now: Cases.start)
        else {
            Issue.record("a HEAD asking no-cache was answered from the cache")
            return
        }
    }

    @Test func pragmaNoCacheCountsOnlyWithoutCacheControl() {
        #expect(CacheControl.request(cacheControl: [], pragma: ["no-cache"]).noCache)
        #expect(CacheControl.request(cacheControl: [], pragma: ["x, No-Cache"]).noCache)
        #expect(!CacheControl.request(cacheControl: ["max-age=60"], pragma: ["no-cache"]).noCache, "RFC 9111 §5.4")
        #expect(!CacheControl.request(cacheControl: [], pragma: ["no-cachex"]).noCache)
    }

    @Test func expiresSetsFreshnessUnlessMaxAgeIsGiven() {
        var machine = Cases.machine(ttl: 300)
        Cases.fill(&machine, response: Cases.response(expires: 60))
        #expect(Cases.isHit(Self.lookup(&machine, at: 59)))
        #expect(Cases.isFetch(Self.lookup(&machine, at: 60)))

        var capped = Cases.machine(ttl: 30)
        Cases.fill(&capped, response: Cases.response(expires: 60))
        #expect(Cases.isFetch(Self.lookup(&capped, at: 30)), "the rule's ttl caps Expires")

        var maxAge = Cases.machine(ttl: 300)
        Cases.fill(&maxAge, response: Cases.response(cacheControl: "max-age=100", expires: 10))
        #expect(Cases.isHit(Self.lookup(&maxAge, at: 50)), "max-age wins over Expires")

        var expired = Cases.machine()
        #expect(Cases.fill(&expired, response: Cases.response(expires: 0)) == .failure(.stale))
        var revalidatable = Cases.machine()
        #expect(Cases.fill(&revalidatable, response: Cases.response(lastModified: "x", expires: -5)) == .success(0))
        guard case .revalidate(_, nil, "x") = Self.lookup(&revalidatable) else {
            Issue.record("an expired entry with Last-Modified was not revalidated")
            return
        }
    }

    static func head(_ text: String) throws -> HTTPRawResponseHead {
        var buffer = ByteBuffer(string: text.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
        var parser = HTTPHeadParser()
        return try #require(try parser.parseResponse(&buffer, requestMethod: .GET))
    }

    @Test func expiresIsCountedFromDate() throws {
        typealias Response = ResponseCacheStateMachine<CachedResponse>.Response
        let wallClock: Int64 = 784_111_000
        let dated = try Self.head(
            "HTTP/1.1 200 OK\ncontent-length: 0\netag: \"v1\"\ndate: Sun, 06 Nov 1994 08:49:37 GMT\nexpires: Sun, 06 Nov 1994 08:50:37 GMT\n")
        let stored = Response(dated, wallClock: wallClock)
        #expect(stored.expires == 60 && stored.etag == "\"v1\"")
        #expect(Response(try Self.head("HTTP/1.1 200 OK\ncontent-length: 0\nexpires: 0\n"), wallClock: wallClock).expires == 0)
        let undated = try Self.head("HTTP/1.1 200 OK\ncontent-length: 0\nexpires: Sun, 06 Nov 1994 08:49:37 GMT\n")
        #expect(Response(undated, wallClock: wallClock).expires == 777, "from the gateway's clock without Date")
    }

    /// RFC 9111 §3.2 / §4.3.4: a 304's fields replace the stored ones of their names (all of
    /// them: two `cache-control` lines replace one), the framing, `Vary` and `Set-Cookie` stay
    /// the stored response's, a stored `age` goes, and the body is the stored one.
    @Test func a304RewritesTheStoredFieldsButNotTheFraming() throws {
        typealias Response = ResponseCacheStateMachine<CachedResponse>.Response
        let stored = CachedResponse(
            head: try Self.head(
                "HTTP/1.1 200 OK\ncontent-length: 4\ncache-control: no-cache\netag: \"v1\"\nvary: accept\nage: 7\nx-app: a\ndate: Sun, 06 Nov 1994 08:49:37 GMT\n"),
            body: ByteBuffer(string: "body"))
        let bare = stored.refreshed(by: try Self.head("HTTP/1.1 304 Not Modified\n"))
        #expect(bare.head.headers.firstValue(named: "etag") == "\"v1\"" && bare.head.headers.firstValue(named: "cache-control") == "no-cache")
        #expect(bare.head.headers.firstValue(named: "age") == nil, "the refreshed entry is as old as the 304")

        let notModified = try Self.head(
            "HTTP/1.1 304 Not Modified\ncache-control: max-age=300\ncache-control: public\netag: \"v2\"\ncontent-length: 99\n"
                + "vary: *\nset-cookie: s=1\nconnection: close\ndate: Sun, 06 Nov 1994 08:50:00 GMT\n")
        let refreshed = stored.refreshed(by: notModified)
        let headers = refreshed.head.headers
        #expect(refreshed.head.status == 200 && String(buffer: refreshed.body) == "body")
        #expect(headers.values(named: "cache-control") == ["max-age=300", "public"] && headers.values(named: "etag") == ["\"v2\""])
        #expect(headers.firstValue(named: "date") == "Sun, 06 Nov 1994 08:50:00 GMT" && headers.firstValue(named: "x-app") == "a")
        #expect(headers.values(named: "content-length") == ["4"] && refreshed.head.framing.body == .contentLength(4))
        #expect(headers.values(named: "vary") == ["accept"] && !headers.contains("set-cookie") && !headers.contains("connection"))
        let response = Response(refreshed.head, wallClock: 0)
        #expect(response.cacheControl.maxAge == 300 && !response.cacheControl.noCache && response.etag == "\"v2\"" && response.age == 0)
        #expect(refreshed.size(key: "k") == refreshed.head.byteCount + 1 + 4)
    }

    /// RFC 9111 §4.3.4: a 304 selects the stored response only by a validator it matches. An
    /// `ETag` both carry decides (strong comparison for a strong one, weak for a weak one);
    /// else `Last-Modified`; a validator the stored response lacks selects nothing; a 304 with
    /// none selects the one response revalidated.
    @Test func a304SelectsTheStoredResponseOnlyByAValidatorItMatches() {
        typealias Validators = Machine.Validators
        let cases: [(sent: Validators, stored: Validators, selects: Bool)] = [
            (.init(etag: "\"v1\""), .init(etag: "\"v1\""), true),
            (.init(etag: "\"v2\""), .init(etag: "\"v1\""), false),
            (.init(etag: "W/\"v1\""), .init(etag: "\"v1\""), true),
            (.init(etag: "W/\"v1\""), .init(etag: "W/\"v1\""), true),
            (.init(etag: "W/\"v2\""), .init(etag: "\"v1\""), false),
            (.init(etag: "\"v1\""), .init(etag: "W/\"v1\""), false),
            (.init(etag: "\"v2\"", lastModified: "L"), .init(etag: "\"v1\"", lastModified: "L"), false),
            (.init(etag: "\"v1\"", lastModified: "M"), .init(etag: "\"v1\"", lastModified: "L"), true),
            (.init(etag: "\"v2\"", lastModified: "L"), .init(lastModified: "L"), true),
            (.init(etag: "\"v2\""), .init(lastModified: "L"), false),
            (.init(lastModified: "L"), .init(lastModified: "L"), true),
            (.init(lastModified: "M"), .init(lastModified: "L"), false),
            (.init(lastModified: "L"), .init(etag: "\"v1\""), false),
            (.init(), .init(etag: "\"v1\"", lastModified: "L"), true),
        ]
        for (sent, stored, selects) in cases {
            #expect(Machine.selects(sent, stored: stored) == selects, "304 \(sent) stored \(stored)")
        }
    }

    /// A revalidation answered by a 304 with another strong `ETag`: the entry is not updated
    /// but dropped, the fetch stays in flight (a request for the key waits on), and the fill
    /// of the request sent again stores its 200 for the waiter. A weak match updates as before.
    @Test(arguments: [("W/\"v1\"", true), ("\"v2\"", false)])
    func a304ThatSelectsNothingDropsTheEntryAndTheFetchGoesOn(_ etag: String, selected: Bool) throws {
        let cache = RuleCache(policy: GatewayCachePolicy(ttl: .seconds(30), maxBytes: 10_000), counters: [:])
        let key = "api /a"
        let none = try Self.head("HTTP/1.1 200 OK\ncontent-length: 0\n").headers
        let asked = ResponseCacheStateMachine<CachedResponse>.Request(
            key: key, isHead: false, hasAuthorization: false, cacheControl: CacheControl(), ifNoneMatch: nil)
        let at = Cases.start
        func lookup(afterWaitSince: NIODeadline? = nil) -> ResponseCacheStateMachine<CachedResponse>.Lookup {
            cache.lookup(asked, header: { _ in nil }, now: at, afterWaitSince: afterWaitSince)
        }
        func store(_ fill: ResponseCacheFill, _ head: String, body: String) throws -> ResponseCacheFill.Completion {
            fill.responseHead(try Self.head(head))
            fill.responseBody(ByteBuffer(string: body))
            return fill.complete(now: at)
        }
        guard case .fetch = lookup(), case .relayed = try store(
            ResponseCacheFill(cache: cache, key: key, requestHeaders: none),
            "HTTP/1.1 200 OK\ncontent-length: 3\ncache-control: no-cache\netag: \"v1\"\n", body: "old")
        else {
            Issue.record("not stored")
            return
        }

        guard case .revalidate(let stale, "\"v1\"", nil) = lookup() else {
            Issue.record("not revalidated")
            return
        }
        let fill = ResponseCacheFill(cache: cache, key: key, requestHeaders: none, revalidating: stale)
        fill.responseHead(try Self.head("HTTP/1.1 304 Not Modified\netag: \(etag)\ncache-control: max-age=60\n"))
        #expect(fill.isNotModified, "a revalidation's 304 is not relayed")
        switch fill.complete(now: at) {
        case .revalidated(let refreshed):
            #expect(selected && String(buffer: refreshed.body) == "old" && refreshed.head.headers.firstValue(named: "etag") == etag)
            #expect(cache.summary(key: key, now: at).fresh == 1, "the refreshed entry (max-age=60) is fresh")
        case .refetch:
            #expect(!selected, "a 304 with \(etag) did not update the entry")
            #expect(cache.summary(key: key, now: at).entries == 0, "the entry is dropped")
            guard case .wait = lookup() else {
                Issue.record("the fetch did not stay in flight")
                return
            }
            let again = fill.refetch()
            #expect(again.revalidating == nil)
            guard case .relayed = try store(again, "HTTP/1.1 200 OK\ncontent-length: 3\netag: \"v2\"\n", body: "new") else {
                Issue.record("the refetch is no plain fetch")
                return
            }
            guard case .hit(let entry, _, "\"v2\"", false, false) = lookup(afterWaitSince: at) else {
                Issue.record("no hit after the wait")
                return
            }
            #expect(String(buffer: entry.body) == "new")
        case .relayed:
            Issue.record("a revalidation's 304 was relayed")
        }
    }

    @Test func httpDatesInAllThreeFormsAndNothingElse() {
        let now: Int64 = 1_780_000_000  // 2026
        #expect(HTTPDate.seconds("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == 784_111_777)
        #expect(HTTPDate.seconds("Sunday, 06-Nov-94 08:49:37 GMT", now: now) == 784_111_777)
        #expect(HTTPDate.seconds("Sun Nov  6 08:49:37 1994", now: now) == 784_111_777)
        #expect(HTTPDate.seconds("Thu, 01 Jan 1970 00:00:00 GMT", now: now) == 0)
        #expect(HTTPDate.seconds("Tue, 29 Feb 2028 23:59:59 GMT", now: now) == 1_835_481_599)
        #expect(HTTPDate.seconds("Wednesday, 01-Jan-70 00:00:00 GMT", now: now) == 3_155_760_000, "2070: within 50 years")
        for invalid in ["0", "", "-1", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT",
                        "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:49 GMT"] {
            #expect(HTTPDate.seconds(invalid, now: now) == nil, "\(invalid)")
        }
    }
}
