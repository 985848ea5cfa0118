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
