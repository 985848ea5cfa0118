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

    @Test func expiresIsCountedFromDateAndA304RefreshesTheStoredFields() throws {
        typealias Response = ResponseCacheStateMachine<CachedResponse>.Response
        let wallClock: Int64 = 784_111_000
        let dated = try Self.head(
            "HTTP/1.1 200 OK\ncontent-length: 0\netag: \"v1\"\ndate: Sun, 06 Nov 1994 08:49:37 GMT\nexpires: Sun, 06 Nov 1994 08:50:37 GMT\n")
        let stored = Response(dated, wallClock: wallClock)
        #expect(stored.expires == 60 && stored.etag == "\"v1\"")
        #expect(Response(try Self.head("HTTP/1.1 200 OK\ncontent-length: 0\nexpires: 0\n"), wallClock: wallClock).expires == 0)
        let undated = try Self.head("HTTP/1.1 200 OK\ncontent-length: 0\nexpires: Sun, 06 Nov 1994 08:49:37 GMT\n")
        #expect(Response(undated, wallClock: wallClock).expires == 777, "from the gateway's clock without Date")

        let bare = try Self.head("HTTP/1.1 304 Not Modified\n")
        let kept = Response(stored: dated, notModified: bare, wallClock: wallClock)
        #expect(kept.status == 200 && kept.expires == 60 && kept.etag == "\"v1\"", "the stored fields stay")
        let fresher = try Self.head("HTTP/1.1 304 Not Modified\ncache-control: max-age=300\netag: \"v2\"\nlast-modified: x\n")
        let refreshed = Response(stored: dated, notModified: fresher, wallClock: wallClock)
        #expect(refreshed.cacheControl.maxAge == 300 && refreshed.expires == nil, "the 304's freshness replaces the stored")
        #expect(refreshed.etag == "\"v2\"" && refreshed.lastModified == "x")
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
