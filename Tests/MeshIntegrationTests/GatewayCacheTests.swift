import Foundation
import MeshTestSupport
import Testing

/// The gateway's response cache with real processes and curl over HTTPS: a second GET is a
/// hit the app never sees, `no-store` is never kept, `Vary` keeps one entry per value, an
/// `ETag` turns `If-None-Match` into 304 at the edge, 100 concurrent misses reach the app once
/// (with one worker thread or two: the rule's store is the process's), and `maxBytes` refuses
/// an entry over the bound and evicts the least recently used (over both threads). A stored
/// `no-cache` (or expired) response with a validator is revalidated with a conditional request;
/// `Expires` sets freshness.
/// The app sets response headers from `x-respond-with`; its body names the request id, so a
/// body seen twice came from the cache.
@Suite(.serialized) struct GatewayCacheTests {
    static func resources(maxBytes: String = "1Mi") -> String {
        """
          - kind: GatewayRoute
            name: shop
            hosts: [ api.example.com ]
            rules:
              - match: { pathPrefix: /pay }
                service: payments
                rewrite: { pathPrefix: / }
                cache: { ttl: 60s, maxBytes: \(maxBytes) }
          - kind: Route
            service: payments
            rules:
              - match: { pathPrefix: / }
                timeout: 30s
                backends: [ { subset: { version: v1 }, weight: 100 } ]
        """
    }

    static func start(maxBytes: String = "1Mi", workers: Int = 1) async throws -> (TestHTTPApp, GatewayMesh) {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(
            backends: [(app, "version: v1")], gatewayResources: resources(maxBytes: maxBytes), arguments: ["--workers", "\(workers)"])
        return (app, edge)
    }

    static func cacheCount(_ edge: GatewayMesh, _ result: String) async throws -> Double? {
        metricValueOrZero(try await edge.metrics(), "sidecar_cache_requests_total", ["route": "shop", "result": result])
    }

    @Test func theSecondGetIsAHitAndNoStoreIsNeverKept() async throws {
        let (app, edge) = try await Self.start()
        let first = try await edge.https("api.example.com", "/pay/a")
        let second = try await edge.https("api.example.com", "/pay/a")
        #expect(first.status == 200 && first.headers["x-mesh-cache"] == "miss", "\(first)")
        #expect(second.status == 200 && second.headers["x-mesh-cache"] == "hit", "\(second)")
        #expect(second.body == first.body && second.headers["age"] != nil, "\(second)")
        #expect(app.requests == 1)
        let head = try await edge.https("api.example.com", "/pay/a", ["-I"])
        #expect(head.status == 200 && head.headers["x-mesh-cache"] == "hit" && head.body.isEmpty, "\(head)")
        #expect(app.requests == 1)

        let noStore = ["-H", "x-respond-with: cache-control: no-store"]
        for _ in 0..<3 {
            let answer = try await edge.https("api.example.com", "/pay/private", noStore)
            #expect(answer.status == 200 && answer.headers["x-mesh-cache"] == "miss", "\(answer)")
        }
        let privately = ["-H", "x-respond-with: cache-control: private, max-age=60"]
        for _ in 0..<2 { _ = try await edge.https("api.example.com", "/pay/mine", privately) }
        // A request with Authorization bypasses a rule without allowAuthorization.
        for _ in 0..<2 { _ = try await edge.https("api.example.com", "/pay/a", ["-H", "authorization: Bearer x"]) }
        #expect(app.requests == 1 + 3 + 2 + 2)
        #expect(try await Self.cacheCount(edge, "hit") == 2)
        #expect(try await Self.cacheCount(edge, "bypass") == 2)
        #expect(try await Self.cacheCount(edge, "miss") == 6)
    }

    @Test func varyKeepsTwoEntriesAndAnETagIsRevalidatedAtTheEdge() async throws {
        let (app, edge) = try await Self.start()
        let vary = ["-H", "x-respond-with: vary: accept-language", "-H", "x-respond-with: etag: \"v1\""]
        let english = try await edge.https("api.example.com", "/pay/lang", vary + ["-H", "accept-language: en"])
        let german = try await edge.https("api.example.com", "/pay/lang", vary + ["-H", "accept-language: de"])
        let englishAgain = try await edge.https("api.example.com", "/pay/lang", vary + ["-H", "accept-language: en"])
        let germanAgain = try await edge.https("api.example.com", "/pay/lang", vary + ["-H", "accept-language: de"])
        #expect(english.headers["x-mesh-cache"] == "miss" && german.headers["x-mesh-cache"] == "miss")
        #expect(englishAgain.headers["x-mesh-cache"] == "hit" && englishAgain.body == english.body, "\(englishAgain)")
        #expect(germanAgain.headers["x-mesh-cache"] == "hit" && germanAgain.body == german.body, "\(germanAgain)")
        #expect(english.body != german.body)
        #expect(app.requests == 2)

        let revalidated = try await edge.https(
            "api.example.com", "/pay/lang", vary + ["-H", "accept-language: en", "-H", "if-none-match: \"v1\""])
        #expect(revalidated.status == 304 && revalidated.body.isEmpty, "\(revalidated)")
        #expect(revalidated.headers["etag"] == "\"v1\"" && revalidated.headers["x-mesh-cache"] == "hit", "\(revalidated)")
        let changed = try await edge.https(
            "api.example.com", "/pay/lang", vary + ["-H", "accept-language: en", "-H", "if-none-match: \"v0\""])
        #expect(changed.status == 200 && changed.body == english.body, "\(changed)")
        #expect(app.requests == 2)
    }

    /// One worker thread (the tests' default): exactly one request reaches the app. Over HTTP/2:
    /// the 100 requests are streams of one connection.
    @Test func aHundredConcurrentMissesReachTheAppOnce() async throws {
        let (app, edge) = try await Self.start()
        let (miss, hit, coalesced) = try await Self.burst(edge, "--http2")
        #expect(app.requests == 1)
        #expect(miss == 1 && hit + coalesced == 99 && coalesced > 0, "miss \(miss) hit \(hit) coalesced \(coalesced)")
    }

    /// Two worker threads share each rule's store: one fetch for the process. Over HTTP/1.1: 100
    /// connections, which the listener hands to the two threads' event loops in turn (so about
    /// 50 on each). Per-thread caches would fetch once per thread.
    @Test func withTwoWorkersConcurrentMissesReachTheAppOnce() async throws {
        let (app, edge) = try await Self.start(workers: 2)
        let (miss, hit, coalesced) = try await Self.burst(edge, "--http1.1")
        #expect(app.requests == 1 && miss == 1, "app \(app.requests) miss \(miss)")
        #expect(hit + coalesced == 99 && coalesced > 0, "miss \(miss) hit \(hit) coalesced \(coalesced)")
    }

    /// A client's `no-cache` keeps the rule: 100 concurrent requests asking it of one stored
    /// key send one revalidation upstream; the others wait for it and take the entry it
    /// confirmed (validated after they came, so their `no-cache` holds).
    @Test func aHundredConcurrentNoCacheRequestsRevalidateOnce() async throws {
        let (app, edge) = try await Self.start()
        let etag = ["-H", "x-respond-with: etag: \"v1\""]
        let path = "/pay/slow?ms=3000"
        _ = try await edge.https("api.example.com", path, etag)
        let (miss, hit, coalesced) = try await Self.burst(edge, "--http2", path: path, headers: etag + ["-H", "cache-control: no-cache"])
        #expect(app.requests == 2 && app.notModified == 1, "requests \(app.requests) 304s \(app.notModified)")
        #expect(try await Self.cacheCount(edge, "revalidated") == 1)
        #expect(miss == 1 && hit == 0 && coalesced == 99, "miss \(miss) hit \(hit) coalesced \(coalesced)")
    }

    /// A revalidation answered by a 304 that selects nothing (another strong `ETag`) keeps the
    /// rule: 100 concurrent `no-cache` requests send the revalidation and then the one request
    /// sent again without conditions; the others wait for both and take the 200 it stored.
    @Test func aHundredConcurrentRequestsBehindA304ThatSelectsNothingReachTheAppTwice() async throws {
        let (app, edge) = try await Self.start()
        let dated = ["-H", "x-respond-with: last-modified: Sun, 06 Nov 1994 08:49:37 GMT"]
        // 1.5 s per answer: every request of the burst must arrive before the refetch stored
        // its 200 (a later one revalidates again, as its `no-cache` asks; eight of a hundred
        // came later beside the whole parallel suite, so this suite runs after it), and both
        // answers come well within the 5 s a waiter waits (`GatewayResponseCaches.waitTimeout`;
        // past it each goes upstream: at 2.4 s a third of them did).
        let path = "/pay/slow?ms=1500"
        _ = try await edge.https("api.example.com", path, dated + ["-H", "x-respond-with: etag: \"v1\""])
        let (miss, hit, coalesced) = try await Self.burst(
            edge, "--http2", path: path, headers: dated + ["-H", "x-respond-with: etag: \"v2\"", "-H", "cache-control: no-cache"])
        #expect(app.requests == 3 && app.notModified == 1, "requests \(app.requests) 304s \(app.notModified)")
        #expect(miss == 2 && hit == 0 && coalesced == 99, "miss \(miss) hit \(hit) coalesced \(coalesced)")
        #expect(try await Self.cacheCount(edge, "revalidated") == 0)
    }

    /// Admin `/explain` on the gateway process: the rule that takes the request and, once a GET
    /// stored its answer, that the cache answers the next one.
    @Test func explainShowsTheRuleAndThatTheCacheWillAnswer() async throws {
        let (_, edge) = try await Self.start()
        // curl's Host carries the port, and so does the cache key.
        let uri = "http://127.0.0.1:\(edge.admin)/explain?authority=api.example.com:\(edge.httpsPort)&path=/pay/x"
        let before = try await curl([uri])
        #expect(before.status == 200 && before.body.contains("\"decision\":\"forward\""), "\(before.body)")
        #expect(before.body.contains("\"route\":\"shop\"") && before.body.contains("\"upstreamPath\":\"/x\""), "\(before.body)")
        _ = try await edge.https("api.example.com", "/pay/x")
        let after = try await curl([uri])
        #expect(after.body.contains("\"decision\":\"cache\"") && after.body.contains("\"keyFresh\":1"), "\(after.body)")
    }

    /// 100 concurrent GETs of one key (curl's `version`: `--http2`, `--http1.1`; `headers`: curl
    /// `-H` arguments), all 200; the cache's miss, hit and coalesced counts.
    static func burst(
        _ edge: GatewayMesh, _ version: String, path: String = "/pay/slow?ms=1500", headers: [String] = []
    ) async throws -> (miss: Double, hit: Double, coalesced: Double) {
        // The app answers after 1.5 s, so the misses pile up behind the first one's fetch
        // (requests that arrive after it was stored are plain hits: the app count holds either way).
        let url = "https://api.example.com:\(edge.httpsPort)\(path)"
        let burst = try await ChildProcess.run(
            ["curl", "-sS", version, "--parallel", "--parallel-immediate", "--parallel-max", "100", "--cacert", edge.externalCA,
             "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1", "-w", "%{http_code} "] + headers
                + Array(repeating: ["-o", "/dev/null", url], count: 100).flatMap { $0 },
            timeout: .seconds(120))
        let codes = burst.stdout.split(separator: " ")
        #expect(codes.count == 100 && codes.allSatisfy { $0 == "200" }, "\(burst.stdout) \(burst.stderr)")
        return (try await cacheCount(edge, "miss") ?? -1, try await cacheCount(edge, "hit") ?? -1,
                try await cacheCount(edge, "coalesced") ?? -1)
    }

    /// Two worker threads (each request a new connection, so they alternate): the bound and the
    /// least-recently-used order are the process's.
    @Test func maxBytesRefusesALargerEntryAndEvictsTheLeastRecentlyUsed() async throws {
        // Three 4000-byte bodies do not fit 10000 bytes (heads and keys count too): two do.
        let (app, edge) = try await Self.start(maxBytes: "10000", workers: 2)
        let large = try await edge.https("api.example.com", "/pay/bytes?n=12000")
        #expect(large.status == 200 && large.body.utf8.count == 12000, "\(large.status)")
        _ = try await edge.https("api.example.com", "/pay/bytes?n=12000")
        #expect(app.requests == 2, "an entry over the bound was stored")

        for path in ["/pay/bytes?n=4000", "/pay/bytes?n=4001"] { _ = try await edge.https("api.example.com", path) }
        #expect(try await edge.https("api.example.com", "/pay/bytes?n=4000").headers["x-mesh-cache"] == "hit")
        // n=4001 is now the least recently used: storing n=4002 evicts it, n=4000 stays.
        _ = try await edge.https("api.example.com", "/pay/bytes?n=4002")
        #expect(app.requests == 5)
        #expect(try await edge.https("api.example.com", "/pay/bytes?n=4000").headers["x-mesh-cache"] == "hit")
        #expect(try await edge.https("api.example.com", "/pay/bytes?n=4002").headers["x-mesh-cache"] == "hit")
        #expect(try await edge.https("api.example.com", "/pay/bytes?n=4001").headers["x-mesh-cache"] == "miss")
        #expect(app.requests == 6)
        // The whole 10000 bytes are one store's, not 5000 per thread: a 6000-byte body is kept.
        _ = try await edge.https("api.example.com", "/pay/bytes?n=6000")
        #expect(try await edge.https("api.example.com", "/pay/bytes?n=6000").headers["x-mesh-cache"] == "hit")
        #expect(app.requests == 7)
    }
}
