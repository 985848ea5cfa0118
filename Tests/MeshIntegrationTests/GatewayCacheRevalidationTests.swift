import Foundation
import MeshTestSupport
import Testing

/// Revalidation and `Expires` in the gateway's cache, with real processes and curl over HTTPS
/// (HTTP/1.1 and HTTP/2 from outside). The app answers 304 to a conditional request whose
/// `If-None-Match` / `If-Modified-Since` equals the `ETag` / `Last-Modified` it would send (the
/// client picks them with `x-respond-with`) and counts both kinds of answer; its body names the
/// request id, so a body seen twice came from the cache.
@Suite(.serialized) struct GatewayCacheRevalidationTests {
    static func respondWith(_ lines: String...) -> [String] { lines.flatMap { ["-H", "x-respond-with: \($0)"] } }

    /// `no-cache` with an `ETag`: stored, and every later use asks the app first. A 304 gives
    /// the stored body (`x-mesh-cache: revalidated`); a 200 (the ETag changed) replaces it.
    @Test(arguments: ["--http1.1", "--http2"])
    func aNoCacheEntryIsRevalidatedWithIfNoneMatch(_ version: String) async throws {
        let (app, edge) = try await GatewayCacheTests.start()
        let v1 = [version] + Self.respondWith("cache-control: no-cache", "etag: \"v1\"")
        let first = try await edge.https("api.example.com", "/pay/doc", v1)
        #expect(first.status == 200 && first.headers["x-mesh-cache"] == "miss", "\(first)")

        let second = try await edge.https("api.example.com", "/pay/doc", v1)
        #expect(second.status == 200 && second.headers["x-mesh-cache"] == "revalidated", "\(second)")
        #expect(second.body == first.body && second.headers["etag"] == "\"v1\"", "\(second)")
        #expect(app.requests == 2 && app.notModified == 1, "requests \(app.requests) 304s \(app.notModified)")

        // The client's own If-None-Match, after the app said 304: 304 from the edge.
        let conditional = try await edge.https("api.example.com", "/pay/doc", v1 + ["-H", "if-none-match: \"v1\""])
        #expect(conditional.status == 304 && conditional.body.isEmpty, "\(conditional)")
        #expect(app.requests == 3 && app.notModified == 2)

        let v2 = [version] + Self.respondWith("cache-control: no-cache", "etag: \"v2\"")
        let changed = try await edge.https("api.example.com", "/pay/doc", v2)
        #expect(changed.status == 200 && changed.headers["x-mesh-cache"] == "miss" && changed.body != first.body, "\(changed)")
        #expect(app.requests == 4 && app.notModified == 2, "the app saw If-None-Match: \"v1\" and answered 200")
        let again = try await edge.https("api.example.com", "/pay/doc", v2)
        #expect(again.headers["x-mesh-cache"] == "revalidated" && again.body == changed.body, "\(again)")
        #expect(app.requests == 5 && app.notModified == 3)
        #expect(try await GatewayCacheTests.cacheCount(edge, "revalidated") == 3)
    }

    /// RFC 9111 §4.3.4: a 304 updates the stored fields. A `no-cache` entry revalidated by
    /// `If-Modified-Since`, whose 304 says `max-age=300` and a new `ETag`: the caller gets the
    /// stored body with those fields, the next request is a hit with them (the app not asked),
    /// and an `If-None-Match` of the new tag is 304 at the edge.
    @Test(arguments: ["--http1.1", "--http2"])
    func a304UpdatesTheStoredFieldsAndFreshness(_ version: String) async throws {
        let (app, edge) = try await GatewayCacheTests.start()
        let modified = "last-modified: Sun, 06 Nov 1994 08:49:37 GMT"
        let first = try await edge.https("api.example.com", "/pay/doc", [version] + Self.respondWith("cache-control: no-cache", modified))
        #expect(first.headers["x-mesh-cache"] == "miss" && first.headers["etag"] == nil, "\(first)")

        let newer = [version] + Self.respondWith("cache-control: max-age=300", modified, "etag: \"v2\"")
        let refreshed = try await edge.https("api.example.com", "/pay/doc", newer)
        #expect(refreshed.status == 200 && refreshed.headers["x-mesh-cache"] == "revalidated" && refreshed.body == first.body, "\(refreshed)")
        #expect(refreshed.headers["cache-control"] == "max-age=300" && refreshed.headers["etag"] == "\"v2\"", "\(refreshed)")
        #expect(app.requests == 2 && app.notModified == 1, "requests \(app.requests) 304s \(app.notModified)")

        let hit = try await edge.https("api.example.com", "/pay/doc", [version])
        #expect(hit.headers["x-mesh-cache"] == "hit" && hit.body == first.body, "\(hit)")
        #expect(hit.headers["cache-control"] == "max-age=300" && hit.headers["etag"] == "\"v2\"", "\(hit)")
        let conditional = try await edge.https("api.example.com", "/pay/doc", [version, "-H", "if-none-match: \"v2\""])
        #expect(conditional.status == 304 && conditional.headers["etag"] == "\"v2\"", "\(conditional)")
        #expect(conditional.headers["cache-control"] == "max-age=300", "\(conditional)")
        #expect(app.requests == 2)
    }

    /// RFC 9111 §5.2.1.4: a client's `no-cache` (or `Pragma: no-cache`, or `max-age=0`) is
    /// answered from a fresh entry only once the app confirmed it: a 304 gives the stored body
    /// (`revalidated`), a 200 is the answer and replaces the entry, and an entry without a
    /// validator is fetched again. `no-store` goes upstream and neither uses nor changes the entry.
    @Test func aClientsNoCacheRevalidatesAndNoStoreBypasses() async throws {
        let (app, edge) = try await GatewayCacheTests.start()
        let v1 = Self.respondWith("etag: \"v1\"")
        let first = try await edge.https("api.example.com", "/pay/doc", v1)
        for asked in ["cache-control: no-cache", "pragma: no-cache", "cache-control: max-age=0"] {
            let answer = try await edge.https("api.example.com", "/pay/doc", v1 + ["-H", asked])
            #expect(answer.status == 200 && answer.headers["x-mesh-cache"] == "revalidated" && answer.body == first.body, "\(asked): \(answer)")
        }
        #expect(app.requests == 4 && app.notModified == 3, "requests \(app.requests) 304s \(app.notModified)")

        let noStore = try await edge.https("api.example.com", "/pay/doc", v1 + ["-H", "cache-control: no-store"])
        #expect(noStore.headers["x-mesh-cache"] == "miss" && noStore.body != first.body, "\(noStore)")
        let kept = try await edge.https("api.example.com", "/pay/doc", v1)
        #expect(kept.headers["x-mesh-cache"] == "hit" && kept.body == first.body, "\(kept)")
        #expect(app.requests == 5)

        let v2 = Self.respondWith("etag: \"v2\"")
        let changed = try await edge.https("api.example.com", "/pay/doc", v2 + ["-H", "cache-control: no-cache"])
        #expect(changed.headers["x-mesh-cache"] == "miss" && changed.body != first.body && changed.headers["etag"] == "\"v2\"", "\(changed)")
        let replaced = try await edge.https("api.example.com", "/pay/doc", v2)
        #expect(replaced.headers["x-mesh-cache"] == "hit" && replaced.body == changed.body, "\(replaced)")
        #expect(app.requests == 6 && app.notModified == 3)

        let plain = try await edge.https("api.example.com", "/pay/plain")
        let fetched = try await edge.https("api.example.com", "/pay/plain", ["-H", "cache-control: no-cache"])
        #expect(fetched.headers["x-mesh-cache"] == "miss" && fetched.body != plain.body, "\(fetched)")
        let stored = try await edge.https("api.example.com", "/pay/plain")
        #expect(stored.headers["x-mesh-cache"] == "hit" && stored.body == fetched.body, "\(stored)")
        #expect(app.requests == 8)
        #expect(try await GatewayCacheTests.cacheCount(edge, "revalidated") == 3)
        #expect(try await GatewayCacheTests.cacheCount(edge, "bypass") == 1)
    }

    /// RFC 9111 §4.3.4: a 304 whose strong `ETag` differs from the entry's selects nothing.
    /// The app answers the revalidation (`If-None-Match: "v1"`, `If-Modified-Since`) 304 by the
    /// date but with `ETag: "v2"`: the entry is not rewritten but dropped, and the request goes
    /// again without the entry's conditions, as a miss (a 200 with the new body, stored). A
    /// client's own `If-None-Match` goes with the request sent again: the app's 304 for it is
    /// the client's answer (a miss; nothing stored).
    @Test(arguments: ["--http1.1", "--http2"])
    func a304WithAnotherStrongETagDoesNotUpdateTheEntry(_ version: String) async throws {
        let (app, edge) = try await GatewayCacheTests.start()
        let dated = "last-modified: Sun, 06 Nov 1994 08:49:37 GMT"
        let tagged: (String) -> [String] = { [version] + Self.respondWith("cache-control: no-cache", "etag: \"\($0)\"", dated) }
        let first = try await edge.https("api.example.com", "/pay/doc", tagged("v1"))
        #expect(first.status == 200 && first.headers["x-mesh-cache"] == "miss", "\(first)")

        let second = try await edge.https("api.example.com", "/pay/doc", tagged("v2"))
        #expect(second.status == 200 && second.headers["x-mesh-cache"] == "miss" && second.body != first.body, "\(second)")
        #expect(second.headers["etag"] == "\"v2\"", "\(second)")
        #expect(app.requests == 3 && app.notModified == 1, "requests \(app.requests) 304s \(app.notModified)")
        let third = try await edge.https("api.example.com", "/pay/doc", tagged("v2"))
        #expect(third.headers["x-mesh-cache"] == "revalidated" && third.body == second.body, "the refetched 200 was stored: \(third)")
        #expect(app.requests == 4 && app.notModified == 2)

        let conditional = try await edge.https("api.example.com", "/pay/doc", tagged("v3") + ["-H", "if-none-match: \"v3\""])
        #expect(conditional.status == 304 && conditional.headers["x-mesh-cache"] == "miss", "\(conditional)")
        #expect(conditional.headers["etag"] == "\"v3\"" && conditional.body.isEmpty, "\(conditional)")
        #expect(app.requests == 6 && app.notModified == 4, "requests \(app.requests) 304s \(app.notModified)")
        let after = try await edge.https("api.example.com", "/pay/doc", tagged("v3"))
        #expect(after.status == 200 && after.headers["x-mesh-cache"] == "miss", "the entry was dropped: \(after)")
        #expect(app.requests == 7)
        #expect(try await GatewayCacheTests.cacheCount(edge, "revalidated") == 1)
        #expect(try await GatewayCacheTests.cacheCount(edge, "miss") == 4)
    }

    /// RFC 9111 §5.2.1: a client's `max-stale` takes a stale entry unvalidated (`x-mesh-cache:
    /// stale`, its true `age`) within the limit, unless the response said `must-revalidate`;
    /// `min-fresh` asks for that much freshness left; `only-if-cached` is answered from the
    /// cache or 504 `not-cached`, never by the app. The entries are stale on arrival (`age: 15`
    /// past `max-age=10`), so no test waits for time to pass.
    @Test(arguments: ["--http1.1", "--http2"])
    func aClientsMaxStaleMinFreshAndOnlyIfCached(_ version: String) async throws {
        let (app, edge) = try await GatewayCacheTests.start()
        let old = [version] + Self.respondWith("cache-control: max-age=10", "age: 15", "etag: \"o1\"")
        let first = try await edge.https("api.example.com", "/pay/old", old)
        #expect(first.status == 200 && first.headers["x-mesh-cache"] == "miss", "\(first)")
        for asked in ["max-stale=60", "max-stale", "only-if-cached, max-stale=60"] {
            let stale = try await edge.https("api.example.com", "/pay/old", old + ["-H", "cache-control: \(asked)"])
            #expect(stale.status == 200 && stale.headers["x-mesh-cache"] == "stale" && stale.body == first.body, "\(asked): \(stale)")
            #expect((Int(stale.headers["age"] ?? "") ?? 0) >= 15, "\(asked): \(stale)")
        }
        #expect(app.requests == 1)
        for asked in ["max-stale=2", "max-stale=abc"] {
            let validated = try await edge.https("api.example.com", "/pay/old", old + ["-H", "cache-control: \(asked)"])
            #expect(validated.headers["x-mesh-cache"] == "revalidated" && validated.body == first.body, "\(asked): \(validated)")
        }
        #expect(app.requests == 3 && app.notModified == 2, "requests \(app.requests) 304s \(app.notModified)")
        for path in ["/pay/old", "/pay/none"] {
            let refused = try await edge.https("api.example.com", path, old + ["-H", "cache-control: only-if-cached"])
            #expect(refused.status == 504 && refused.headers["x-mesh-error"] == "not-cached", "\(path): \(refused)")
            #expect(refused.headers["x-mesh-cache"] == "miss" && refused.body.hasPrefix("mesh: not-cached:"), "\(path): \(refused)")
        }
        #expect(app.requests == 3, "only-if-cached never reaches the app")

        let must = [version] + Self.respondWith("cache-control: max-age=10, must-revalidate", "age: 15", "etag: \"m1\"")
        _ = try await edge.https("api.example.com", "/pay/must", must)
        let revalidated = try await edge.https("api.example.com", "/pay/must", must + ["-H", "cache-control: max-stale"])
        #expect(revalidated.headers["x-mesh-cache"] == "revalidated", "must-revalidate: \(revalidated)")
        #expect(app.requests == 5 && app.notModified == 3)

        let fresh = [version] + Self.respondWith("cache-control: max-age=60", "etag: \"f1\"")
        _ = try await edge.https("api.example.com", "/pay/fresh", fresh)
        for (asked, answer) in [("min-fresh=30", "hit"), ("min-fresh=-1", "hit"), ("min-fresh=120", "revalidated"), ("only-if-cached", "hit")] {
            let response = try await edge.https("api.example.com", "/pay/fresh", fresh + ["-H", "cache-control: \(asked)"])
            #expect(response.status == 200 && response.headers["x-mesh-cache"] == answer, "\(asked): \(response)")
        }
        #expect(app.requests == 7 && app.notModified == 4, "requests \(app.requests) 304s \(app.notModified)")
    }

    /// `Expires` without `max-age`: an hour ahead is fresh (a hit the app never sees); already
    /// past without a validator is never kept; past with `Last-Modified` is kept and revalidated
    /// with `If-Modified-Since` on every use.
    @Test func expiresSetsFreshnessAndAnExpiredEntryIsRevalidatedByLastModified() async throws {
        let (app, edge) = try await GatewayCacheTests.start()
        let now = Date()
        let ahead = Self.respondWith("expires: \(Self.httpDate(now + 3600))")
        _ = try await edge.https("api.example.com", "/pay/later", ahead)
        let hit = try await edge.https("api.example.com", "/pay/later", ahead)
        #expect(hit.headers["x-mesh-cache"] == "hit" && app.requests == 1, "\(hit)")

        let past = Self.respondWith("expires: \(Self.httpDate(now - 3600))")
        for _ in 0..<2 {
            let answer = try await edge.https("api.example.com", "/pay/gone", past)
            #expect(answer.headers["x-mesh-cache"] == "miss", "\(answer)")
        }
        // An invalid Expires counts as already expired (RFC 9111 §5.3).
        for _ in 0..<2 { _ = try await edge.https("api.example.com", "/pay/bad", Self.respondWith("expires: 0")) }
        #expect(app.requests == 5)

        let modified = past + Self.respondWith("last-modified: \(Self.httpDate(now - 86400))")
        let first = try await edge.https("api.example.com", "/pay/dated", modified)
        let second = try await edge.https("api.example.com", "/pay/dated", modified)
        #expect(second.headers["x-mesh-cache"] == "revalidated" && second.body == first.body, "\(second)")
        #expect(app.requests == 7 && app.notModified == 1, "requests \(app.requests) 304s \(app.notModified)")
    }

    /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}
