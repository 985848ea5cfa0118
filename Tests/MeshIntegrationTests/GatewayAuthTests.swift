import Foundation
import MeshTestSupport
import Testing

/// Authentication at the gateway with real clients: JWTs minted here by PyJWT (ES256, RS256,
/// expired, wrong audience, wrong key, `alg: none`) and API keys; 401 `unauthenticated` with
/// `WWW-Authenticate` for every bad credential, the verified user upstream as `x-mesh-user`,
/// a rate limit per API key, and no key in any log line.
@Suite(.serialized) struct GatewayAuthTests {
    /// Mints keys and tokens: prints a JSON object with `jwks` and the tokens by name.
    static let minter = #"""
        import json, sys, time, jwt
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm
        now = int(time.time())
        ec_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other = ec.generate_private_key(ec.SECP256R1())
        def jwk(key, kid):
            value = json.loads((ECAlgorithm if kid == "ec1" else RSAAlgorithm).to_jwk(key.public_key()))
            value["kid"] = kid
            return value
        claims = {"sub": "alice", "aud": "api", "iss": "https://issuer.example", "exp": now + 300, "nbf": now - 10, "tier": "gold"}
        def sign(key, alg, kid, **changes):
            return jwt.encode({**claims, **changes}, key, algorithm=alg, headers={"kid": kid})
        print(json.dumps({
            "jwks": {"keys": [jwk(ec_key, "ec1"), jwk(rsa_key, "rsa1")]},
            "es256": sign(ec_key, "ES256", "ec1"),
            "rs256": sign(rsa_key, "RS256", "rsa1", sub="bob"),
            "expired": sign(ec_key, "ES256", "ec1", exp=now - 120),
            "audience": sign(ec_key, "ES256", "ec1", aud="other"),
            "wrongKey": sign(other, "ES256", "ec1"),
            "none": jwt.encode(claims, None, algorithm="none"),
        }))
        """#

    static func mint() async throws -> [String: Any] {
        let python = packageRoot.appendingPathComponent(".venv/bin/python3").path
        let result = try await ChildProcess.run([python, "-c", minter], timeout: .seconds(60))
        #expect(result.status == 0, "PyJWT and cryptography in .venv (scripts/install-deps.sh): \(result.stderr)")
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
    }

    /// Minted tokens by name, and the gateway's files with their keys (`jwks.json`).
    static func mintWithJWKSFile() async throws -> (minted: [String: Any], files: [String: String]) {
        let minted = try await mint()
        let jwks = try JSONSerialization.data(withJSONObject: minted["jwks"] ?? [:])
        return (minted, ["jwks.json": String(decoding: jwks, as: UTF8.self)])
    }

    static let apiKey = "k-acme-5f2b9c0d1e"
    static let otherKey = "k-zeta-77aa01"

    static func sha256Hex(_ text: String) async throws -> String {
        let result = try await ChildProcess.run(["sha256sum"], input: text)
        return String(result.stdout.prefix(64))
    }

    @Test func jwtsAndAPIKeysAreCheckedAtTheEdge() async throws {
        let (minted, files) = try await Self.mintWithJWKSFile()
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(
            backends: [(app, "version: v1")],
            gatewayResources: """
                  - kind: GatewayRoute
                    name: api
                    rules:
                      - match: { pathPrefix: /jwt }
                        service: payments
                        auth: jwt-main
                      - match: { pathPrefix: /key }
                        service: payments
                        auth: partners
                        rateLimit: { requestsPerSecond: 1, burst: 2, key: api-key }
                  - kind: AuthenticationPolicy
                    name: jwt-main
                    jwt: { issuer: https://issuer.example, audiences: [ api ], jwksFile: jwks.json, claimsToHeaders: { tier: x-tier } }
                  - kind: AuthenticationPolicy
                    name: partners
                    apiKeys:
                      keys:
                        - { name: acme, sha256: "\(try await Self.sha256Hex(Self.apiKey))" }
                        - { name: zeta, sha256: "\(try await Self.sha256Hex(Self.otherKey))" }
                """,
            files: files)

        func bearer(_ name: String) -> [String] { ["-H", "Authorization: Bearer \(minted[name] as? String ?? "")"] }
        let es = try await edge.https("api.example.com", "/jwt/a", bearer("es256") + ["-H", "x-mesh-user: mallory"])
        #expect(es.status == 200 && es.body.contains("user=alice ") && es.body.contains("tier=gold"), "\(es) \(edge.gateway.logs)")
        let rs = try await edge.https("api.example.com", "/jwt/b", bearer("rs256"))
        #expect(rs.status == 200 && rs.body.contains("user=bob "), "\(rs)")
        for (name, reason) in [("expired", "expired"), ("audience", "audience"), ("wrongKey", "signature"), ("none", "algorithm")] {
            let refused = try await edge.https("api.example.com", "/jwt/a", bearer(name))
            #expect(refused.status == 401, "\(name): \(refused)")
            #expect(refused.headers["x-mesh-error"] == "unauthenticated")
            #expect(refused.headers["www-authenticate"] == "Bearer realm=\"jwt-main\"", "\(refused.headers)")
            let metrics = try await edge.metrics()
            #expect(metricValue(metrics, "sidecar_gateway_auth_failures_total", ["policy": "jwt-main", "reason": reason]) == 1,
                    "\(name)")
        }
        let missing = try await edge.https("api.example.com", "/jwt/a")
        #expect(missing.status == 401 && missing.headers["www-authenticate"] != nil, "\(missing)")

        let key = try await edge.https("api.example.com", "/key/a", ["-H", "x-api-key: \(Self.apiKey)"])
        #expect(key.status == 200 && key.body.contains("user=acme "), "\(key)")
        let wrong = try await edge.https("api.example.com", "/key/a", ["-H", "x-api-key: \(Self.apiKey)x"])
        #expect(wrong.status == 401 && wrong.headers["www-authenticate"] == "ApiKey realm=\"partners\", header=\"x-api-key\"", "\(wrong)")
        // Three more for acme at once (burst 2, one used, 1/s): at least one is over its limit,
        // answered 429 with Retry-After; zeta has its own bucket.
        let url = "https://api.example.com:\(edge.httpsPort)/key/a"
        let burst = try await ChildProcess.run(
            ["curl", "-sS", "--http1.1", "--cacert", edge.externalCA, "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1",
             "-H", "x-api-key: \(Self.apiKey)", "-o", "/dev/null", "-D", "-", url, "-o", "/dev/null", url, "-o", "/dev/null", url])
        let codes = burst.stdout.split(separator: "\r\n").filter { $0.hasPrefix("HTTP/1.1 ") }.map { $0.split(separator: " ")[1] }
        #expect(codes.count == 3 && codes.contains("429"), "\(burst)")
        #expect(burst.stdout.lowercased().contains("retry-after: "), "\(burst.stdout)")
        let zeta = try await edge.https("api.example.com", "/key/a", ["-H", "x-api-key: \(Self.otherKey)"])
        #expect(zeta.status == 200 && zeta.body.contains("user=zeta "), "\(zeta)")
        #expect(app.requests == 4 + codes.filter { $0 == "200" }.count, "only authenticated requests within their limits reached the app")

        edge.gateway.signal(SIGTERM)
        _ = await edge.gateway.process.wait(timeout: .seconds(20))
        let logs = edge.gateway.accessLog + edge.gateway.logs
        #expect(logs.contains("\"direction\":\"gateway\""))
        #expect(!logs.contains(Self.apiKey) && !logs.contains(Self.otherKey), "an API key reached a log")
        #expect(!logs.contains(minted["es256"] as? String ?? "-"), "a token reached a log")
    }
}
