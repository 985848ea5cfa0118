import Foundation
import MeshTestSupport
import Testing

/// The gateway's HTTPS listener offers ALPN `h2` and `http/1.1`: an HTTP/2 client (curl
/// `--http2`, SNI for two hosts) gets everything an HTTP/1.1 one does through the same filters
/// (routing and rewrite, JWT and API-key auth with 401 + `WWW-Authenticate`, the rate limit's
/// 429, CORS preflight, the body limit, the response cache, aggregates), counted and logged as
/// `HTTP/2` at the gateway; HTTP/1.1 clients keep working on the same port, and the plain
/// listener takes h2c with prior knowledge. A grpcio client over TLS calls a gRPC app in the
/// mesh through the gateway (metadata and trailers both ways, streams; UNAUTHENTICATED at the edge).
@Suite(.serialized) struct GatewayHTTP2Tests {
    static let routes = """
          - kind: GatewayRoute
            name: api
            hosts: [ api.example.com ]
            rules:
              - match: { pathPrefix: /api/ }
                service: payments
                rewrite: { pathPrefix: / }
                cors: { allowOrigins: [ "https://app.example.com" ], allowMethods: [ GET, POST ] }
                maxBodyBytes: 16
              - match: { pathPrefix: /jwt }
                service: payments
                auth: jwt-main
              - match: { pathPrefix: /key }
                service: payments
                auth: partners
                rateLimit: { requestsPerSecond: 1, burst: 1, key: api-key }
              - match: { pathPrefix: /cached/ }
                service: payments
                rewrite: { pathPrefix: / }
                cache: { ttl: 60s, maxBytes: 1Mi }
              - match: { path: /home }
                aggregate:
                  timeout: 5s
                  calls: [ { key: a, service: payments, path: /json/a }, { key: b, service: payments, path: /json/b } ]
          - kind: GatewayRoute
            name: www
            hosts: [ www.example.com ]
            rules:
              - match: { path: /home }
                service: payments
          - kind: AuthenticationPolicy
            name: jwt-main
            jwt: { issuer: https://issuer.example, audiences: [ api ], jwksFile: jwks.json }
        """

    static func start() async throws -> (TestHTTPApp, GatewayMesh, [String: Any]) {
        let (minted, files) = try await GatewayAuthTests.mintWithJWKSFile()
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(
            backends: [(app, "version: v1")],
            gatewayResources: routes + """

                  - kind: AuthenticationPolicy
                    name: partners
                    apiKeys: { keys: [ { name: acme, sha256: "\(try await GatewayAuthTests.sha256Hex(GatewayAuthTests.apiKey))" } ] }
                """,
            files: files)
        return (app, edge, minted)
    }

    @Test func http2ClientsGetTheGatewaysRoutingAuthAndLimits() async throws {
        let (app, edge, minted) = try await Self.start()
        let h2 = ["--http2"]
        let api = try await edge.https("api.example.com", "/api/pay/42?x=1", h2 + ["-H", "x-mesh-user: mallory"])
        #expect(api.status == 200 && api.version == "HTTP/2", "\(api) \(edge.gateway.logs)")
        #expect(api.body.contains("path=/pay/42?x=1") && api.body.contains("caller=edge ") && !api.body.contains("mallory"), "\(api.body)")
        let www = try await edge.https("www.example.com", "/home", h2)
        #expect(www.status == 200 && www.version == "HTTP/2" && www.body.contains("path=/home"), "\(www)")
        let unrouted = try await edge.https("www.example.com", "/api/pay", h2)
        #expect(unrouted.status == 404 && unrouted.headers["x-mesh-error"] == "no-route", "\(unrouted)")

        // JWT accepted and refused over HTTP/2.
        let bearer = { (name: String) in ["-H", "Authorization: Bearer \(minted[name] as? String ?? "")"] }
        let alice = try await edge.https("api.example.com", "/jwt/a", h2 + bearer("es256"))
        #expect(alice.status == 200 && alice.version == "HTTP/2" && alice.body.contains("user=alice "), "\(alice)")
        let expired = try await edge.https("api.example.com", "/jwt/a", h2 + bearer("expired"))
        #expect(expired.status == 401 && expired.version == "HTTP/2" && expired.headers["x-mesh-error"] == "unauthenticated", "\(expired)")
        #expect(expired.headers["www-authenticate"] == "Bearer realm=\"jwt-main\"", "\(expired.headers)")

        // The API key's bucket (burst 1, 1/s): of three requests on one connection, one at least is 429.
        let url = "https://api.example.com:\(edge.httpsPort)/key/a"
        let burst = try await ChildProcess.run(
            ["curl", "-sS", "--http2", "--cacert", edge.externalCA, "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1",
             "-H", "x-api-key: \(GatewayAuthTests.apiKey)", "-D", "-", "-o", "/dev/null", url, "-o", "/dev/null", url, "-o", "/dev/null", url])
        let codes = burst.stdout.split(separator: "\r\n").filter { $0.hasPrefix("HTTP/2 ") }.map { $0.split(separator: " ")[1] }
        #expect(codes.count == 3 && codes.first == "200" && codes.contains("429"), "\(burst)")
        #expect(burst.stdout.lowercased().contains("retry-after: "), "\(burst.stdout)")

        // CORS preflight answered at the edge; a declared body over the limit refused at once.
        let preflight = try await edge.https("api.example.com", "/api/pay", h2 + [
            "-X", "OPTIONS", "-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: POST",
        ])
        #expect(preflight.status == 204 && preflight.version == "HTTP/2", "\(preflight)")
        #expect(preflight.headers["access-control-allow-origin"] == "https://app.example.com", "\(preflight.headers)")
        let small = try await edge.https("api.example.com", "/api/pay", h2 + ["--data", "0123456789abcdef"])
        #expect(small.status == 200 && small.body.contains("body-bytes=16 "), "\(small)")
        let large = try await edge.https("api.example.com", "/api/pay", h2 + ["--data", "0123456789abcdefg"])
        #expect(large.status == 413 && large.headers["x-mesh-error"] == "bad-request", "\(large)")
        // A body of no declared length (stdin) is counted as its DATA frames arrive.
        let streamed = try await ChildProcess.run(
            ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", edge.externalCA,
             "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1", "-X", "POST", "-T", "-",
             "https://api.example.com:\(edge.httpsPort)/api/pay"],
            input: String(repeating: "x", count: 100))
        #expect(streamed.stdout == "413", "\(streamed)")

        // HTTP/1.1 clients on the same listener, and h2c with prior knowledge on the plain one.
        let http1 = try await edge.https("api.example.com", "/api/pay", ["--http1.1"])
        #expect(http1.status == 200 && http1.version == "HTTP/1.1", "\(http1)")
        let h2c = try await edge.http("api.example.com", "/api/pay", ["--http2-prior-knowledge"])
        #expect(h2c.status == 200 && h2c.version == "HTTP/2", "\(h2c)")

        let handled = 1 + 1 + 1 + codes.filter { $0 == "200" }.count + 1 + 1 + 1
        #expect(app.requests == handled, "refused, limited and preflight requests never reached the app")
        let metrics = try await edge.metrics()
        #expect(metricValue(metrics, "sidecar_requests_total", ["direction": "gateway", "peer": "payments", "code": "401"]) == 1,
                "\(metrics)")
        #expect(metricValue(metrics, "sidecar_requests_total", ["direction": "gateway", "peer": "payments", "code": "200"]) == Double(handled))
        #expect(metricValue(metrics, "sidecar_gateway_auth_failures_total", ["policy": "jwt-main", "reason": "expired"]) == 1)
        let line = try #require(await eventually { edge.gateway.accessLog.contains("\"path\":\"/jwt/a\"") } ? edge.gateway.accessLog
            .split(separator: "\n").first { $0.contains("\"path\":\"/jwt/a\"") } : nil)
        #expect(line.contains("\"protocol\":\"HTTP/2\"") && line.contains("\"direction\":\"gateway\""), "\(line)")
    }

    @Test func alpnOffersH2AndHTTP1() async throws {
        let (_, edge, _) = try await Self.start()
        for (offered, chosen) in [("h2", "h2"), ("http/1.1", "http/1.1"), ("h2,http/1.1", "h2")] {
            let client = try await ChildProcess.run(
                ["openssl", "s_client", "-connect", "127.0.0.1:\(edge.httpsPort)", "-servername", "www.example.com",
                 "-alpn", offered, "-CAfile", edge.externalCA, "-verify_hostname", "www.example.com"], input: "")
            #expect(client.stdout.contains("ALPN protocol: \(chosen)"), "\(offered): \(client.stdout) \(client.stderr)")
            #expect(client.stdout.contains("Verify return code: 0 (ok)"), "the www certificate by SNI: \(client.stdout)")
        }
    }

    @Test func theCacheAndAggregatesAnswerOverHTTP2() async throws {
        let (app, edge, _) = try await Self.start()
        let h2 = ["--http2"]
        let first = try await edge.https("api.example.com", "/cached/a", h2 + ["-H", "x-respond-with: etag: \"v1\""])
        let second = try await edge.https("api.example.com", "/cached/a", h2)
        #expect(first.status == 200 && first.headers["x-mesh-cache"] == "miss" && first.version == "HTTP/2", "\(first)")
        #expect(second.status == 200 && second.headers["x-mesh-cache"] == "hit" && second.version == "HTTP/2", "\(second)")
        #expect(second.body == first.body && second.headers["age"] != nil, "\(second)")
        #expect(app.requests == 1)
        // The entry an HTTP/2 miss filled answers HTTP/1.1 too (one cache per rule for both codecs).
        let http1 = try await edge.https("api.example.com", "/cached/a", ["--http1.1"])
        #expect(http1.status == 200 && http1.headers["x-mesh-cache"] == "hit" && http1.body == first.body, "\(http1)")
        let notModified = try await edge.https("api.example.com", "/cached/a", h2 + ["-H", "if-none-match: \"v1\""])
        #expect(notModified.status == 304 && notModified.headers["etag"] == "\"v1\"" && notModified.body.isEmpty, "\(notModified)")
        let head = try await edge.https("api.example.com", "/cached/a", h2 + ["-I"])
        #expect(head.status == 200 && head.headers["x-mesh-cache"] == "hit" && head.body.isEmpty, "\(head)")
        // An entry filled over HTTP/1.1 answers HTTP/2.
        let filled = try await edge.https("api.example.com", "/cached/b", ["--http1.1"])
        let fromHTTP1 = try await edge.https("api.example.com", "/cached/b", h2)
        #expect(fromHTTP1.headers["x-mesh-cache"] == "hit" && fromHTTP1.body == filled.body, "\(fromHTTP1)")
        #expect(app.requests == 2)

        let merged = try await edge.https("api.example.com", "/home", h2)
        #expect(merged.status == 200 && merged.version == "HTTP/2" && merged.headers["content-type"] == "application/json", "\(merged)")
        let object = (try? JSONSerialization.jsonObject(with: Data(merged.body.utf8))) as? [String: Any]
        #expect((object?["a"] as? [String: Any])?["path"] as? String == "/json/a", "\(merged.body)")
        #expect((object?["b"] as? [String: Any])?["path"] as? String == "/json/b", "\(merged.body)")
        let hits = metricValueOrZero(try await edge.metrics(), "sidecar_cache_requests_total", ["route": "api", "result": "hit"])
        #expect(hits == 5)
    }

    @Test func aGRPCClientOverTLSCallsThroughTheGateway() async throws {
        let app = try await GRPCMesh.App(name: "grpc-a")
        let mesh = try await GRPCMesh(apps: [app])
        let edge = try await GatewayMesh(mesh: mesh, gatewayResources: """
              - kind: GatewayRoute
                name: rpc
                hosts: [ api.example.com ]
                rules:
                  - match: { path: /mesh.test.Echo/ClientStream }
                    service: payments
                    auth: partners
                  - match: { pathPrefix: /mesh.test.Echo/ }
                    service: payments
              - kind: AuthenticationPolicy
                name: partners
                apiKeys: { keys: [ { name: acme, sha256: "\(try await GatewayAuthTests.sha256Hex(GatewayAuthTests.apiKey))" } ] }
            """)
        func call(_ callCase: String, _ arguments: [String] = []) async throws -> [String: Any] {
            try await GRPCMesh.call(
                callCase, target: "127.0.0.1:\(edge.httpsPort)", authority: "api.example.com", arguments: ["--ca", edge.externalCA] + arguments)
        }
        let unary = try await call("unary")
        #expect(unary["code"] as? String == "OK" && unary["text"] as? String == "hello", "\(unary) \(edge.gateway.logs)")
        #expect(unary["caller"] as? String == "edge", "the app sees the gateway's identity: \(unary)")
        #expect((unary["initial"] as? [String: String])?["x-app-initial"] == "meta-in", "\(unary)")
        #expect((unary["trailing"] as? [String: String])?["x-app-trailer"] == "unary", "\(unary)")
        let stream = try await call("server-stream", ["--count", "1000", "--size", "100"])
        #expect(stream["code"] as? String == "OK" && stream["received"] as? Int == 1000, "\(stream)")
        let bidi = try await call("bidi", ["--count", "100"])
        #expect(bidi["code"] as? String == "OK" && bidi["echoed"] as? Int == 100, "\(bidi)")
        // No API key: the gateway answers in gRPC's form, trailers-only UNAUTHENTICATED.
        let refused = try await call("client-stream", ["--count", "3", "--size", "10"])
        #expect(refused["code"] as? String == "UNAUTHENTICATED", "\(refused)")
        #expect((refused["trailing"] as? [String: String])?["x-mesh-error"] == "unauthenticated", "\(refused)")
        #expect(app.calls("ClientStream") == 0)
    }
}
