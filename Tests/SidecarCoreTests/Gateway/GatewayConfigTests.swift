import Testing
@testable import SidecarCore

/// The gateway's config: the `gateway:` block of a bootstrap file and the GatewayRoute and
/// AuthenticationPolicy resources, decoded with errors that name the key, and written back equal.
@Suite struct GatewayConfigTests {
    static let resources = """
        kind: GatewayRoute
        name: api
        hosts: [ API.example.com, "*.example.org" ]
        rules:
          - match: { pathPrefix: /orders/ }
            service: orders
            rewrite: { pathPrefix: / }
            auth: partners
            rateLimit: { requestsPerSecond: 100, burst: 200, key: api-key }
            cors: { allowOrigins: [ "https://app.example.com" ], allowMethods: [ GET, POST ], maxAge: 10m }
            maxBodyBytes: 1Mi
            cache: { ttl: 30s, maxBytes: 64Mi, allowAuthorization: true }
          - match: { path: /home }
            service: users
        ---
        kind: AuthenticationPolicy
        name: partners
        jwt: { issuer: https://issuer.example, audiences: [ api ], jwksFile: /etc/jwks.json, claimsToHeaders: { sub: x-user } }
        apiKeys: { header: X-Api-Key, keys: [ { name: acme, sha256: "\(String(repeating: "ab", count: 32))" } ] }
        """

    @Test func gatewayRoutesAndPoliciesDecodeAndReadBackEqual() throws {
        let decoded = try MeshResourceDecoder.decodeDocuments(yaml: Self.resources)
        guard case .gatewayRoute(let route) = decoded[0], case .authenticationPolicy(let policy) = decoded[1] else {
            Issue.record("\(decoded)")
            return
        }
        #expect(route.hosts == ["api.example.com", "*.example.org"])
        #expect(route.rules[0].rewritePathPrefix == "/")
        #expect(route.rules[0].rateLimit == GatewayRateLimit(limit: RateLimit(requestsPerSecond: 100, burst: 200), key: .apiKey))
        #expect(route.rules[0].maxBodyBytes == 1 << 20)
        #expect(route.rules[0].cors?.maxAge == .minutes(10))
        #expect(route.rules[0].cache == GatewayCachePolicy(ttl: .seconds(30), maxBytes: 64 << 20, allowAuthorization: true))
        #expect(route.rules[1].cache == nil)
        #expect(route.rules[1].match.path == .exact("/home"))
        #expect(policy.apiKeys?.header == "x-api-key")
        #expect(policy.apiKeys?.keys.first?.sha256 == [UInt8](repeating: 0xab, count: 32))
        #expect(policy.jwt?.claimsToHeaders == ["sub": "x-user"])
        #expect(try MeshResourceDecoder.decodeDocuments(yaml: MeshResource.yaml(decoded)) == decoded)
        #expect(try MeshResourceDecoder.decodeJSON(MeshResource.json(decoded)) == decoded)
        #expect(ResourceKind(word: "gatewayroutes") == .gatewayRoute)
        #expect(ResourceKind(word: "authenticationpolicy") == .authenticationPolicy)
    }

    @Test func hostsMatchExactlyOrByOneWildcardLabel() {
        let route = GatewayRoute(name: "r", hosts: ["api.example.com", "*.example.org"], rules: [])
        #expect(route.matches(host: "api.example.com"))
        #expect(route.matches(host: "a.example.org"))
        #expect(!route.matches(host: "example.org"))
        #expect(!route.matches(host: "a.b.example.org"))
        #expect(!route.matches(host: "api.example.com.evil"))
        #expect(GatewayRoute(name: "any", rules: []).matches(host: "whatever"))
    }

    @Test func badGatewayResourcesNameTheKey() {
        let cases: [(String, String)] = [
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, rewrite: { pathPrefix: / }, match: { path: /x } } ]\n",
             "rules[0].rewrite"),
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, maxBodyBytes: 1Qi } ]\n", "rules[0].maxBodyBytes"),
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, rateLimit: { requestsPerSecond: 1, key: subject } } ]\n",
             "rules[0].rateLimit.key"),
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, cors: { allowOrigins: [ \"app.example.com/\" ] } } ]\n",
             "rules[0].cors.allowOrigins[0]"),
            ("kind: GatewayRoute\nrules: [ { service: payments } ]\n", "name"),
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, cache: { ttl: 30s } } ]\n", "rules[0].cache.maxBytes"),
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, cache: { ttl: 30s, maxBytes: 0 } } ]\n",
             "rules[0].cache.maxBytes"),
            ("kind: GatewayRoute\nname: a\nrules: [ { service: payments, cache: { maxBytes: 1Mi } } ]\n", "rules[0].cache.ttl"),
            ("kind: AuthenticationPolicy\nname: p\napiKeys: { keys: [ { name: acme, sha256: nothex } ] }\n", "apiKeys.keys[0].sha256"),
            ("kind: AuthenticationPolicy\nname: p\njwt: { issuer: x }\n", "jwt"),
            ("kind: AuthenticationPolicy\nname: p\njwt: { jwks: \"{}\", claimsToHeaders: { sub: x-mesh-user } }\n",
             "jwt.claimsToHeaders.sub"),
        ]
        for (yaml, path) in cases {
            do {
                _ = try MeshResourceDecoder.decodeDocuments(yaml: yaml)
                Issue.record("accepted: \(yaml)")
            } catch {
                #expect(error.description.contains("\(path): "), "\(path): \(error)")
            }
        }
    }

    @Test func aGatewaySidecarHasGatewayListenersInsteadOfAnInbound() throws {
        let yaml = """
            service: edge
            gateway:
              http:  { listen: 127.0.0.1:8080, redirectToHttps: true }
              https: { listen: 0.0.0.0:8443, certificates: [ { cert: certs/api.pem, key: certs/api.key } ] }
            tls: { cert: certs/edge.pem, key: certs/edge.key, trustBundle: certs/ca.pem }
            resources:
              - { kind: GatewayRoute, name: api, rules: [ { service: payments, auth: missing } ] }
            """
        do {
            _ = try SidecarConfiguration.decode(yaml: yaml, baseDirectory: "/etc/mesh")
            Issue.record("a rule naming a missing AuthenticationPolicy was accepted")
        } catch {
            #expect(error.description.contains("AuthenticationPolicy missing"), "\(error)")
        }
        let good = yaml.replacingOccurrences(of: ", auth: missing", with: "")
        let configuration = try SidecarConfiguration.decode(yaml: good, baseDirectory: "/etc/mesh")
        #expect(configuration.gateway?.http == GatewayListeners.HTTP(listen: HostPort(host: "127.0.0.1", port: 8080), redirectToHttps: true))
        #expect(configuration.gateway?.https?.certificates == [.init(certificate: "/etc/mesh/certs/api.pem", privateKey: "/etc/mesh/certs/api.key")])
        #expect(try SidecarConfiguration.decode(yaml: configuration.yaml) == configuration)

        for (bad, path) in [
            (good + "\ninbound: { listen: 127.0.0.1:1, app: 127.0.0.1:2 }\n", "gateway"),
            ("service: edge\ngateway: { http: { listen: 127.0.0.1:1, redirectToHttps: true } }\ntls: { cert: a, key: b, trustBundle: c }\n",
             "gateway.http.redirectToHttps"),
            ("service: edge\ngateway: { https: { listen: 127.0.0.1:1, certificates: [] } }\ntls: { cert: a, key: b, trustBundle: c }\n",
             "gateway.https.certificates"),
        ] {
            do {
                _ = try SidecarConfiguration.decode(yaml: bad)
                Issue.record("accepted: \(bad)")
            } catch {
                #expect(error.issues.contains { $0.path == path }, "\(path): \(error)")
            }
        }
    }

    @Test func pathRewriteJoinsWithOneSlash() {
        let rewrite = GatewayRoutingFilter.rewrite
        #expect(rewrite("/orders/42", "/orders/", "/") == "/42")
        #expect(rewrite("/orders/42", "/orders", "/") == "/42")
        #expect(rewrite("/orders", "/orders", "/") == "/")
        #expect(rewrite("/orders/42", "/orders", "/v1") == "/v1/42")
        #expect(rewrite("/orders/42", "/orders/", "/v1") == "/v1/42")
        #expect(rewrite("/orders", "/orders", "/v1/") == "/v1/")
    }
}
