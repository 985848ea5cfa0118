import Foundation
import MeshTestSupport
import Testing

/// The gateway as external clients see it: HTTPS with a certificate per host chosen by SNI,
/// TLS 1.2 and 1.3, the redirect from plain HTTP, GatewayRoute host/path routing with a path
/// rewrite, identity headers that no client can forge, and requests that reach the app over
/// mTLS with the gateway's own identity (`x-mesh-caller: edge`).
@Suite(.serialized) struct GatewayTests {
    static let routes = """
          - kind: GatewayRoute
            name: api
            hosts: [ api.example.com ]
            rules:
              - match: { pathPrefix: /api/ }
                service: payments
                rewrite: { pathPrefix: / }
          - kind: GatewayRoute
            name: www
            hosts: [ www.example.com ]
            rules:
              - match: { path: /home }
                service: payments
        """

    @Test func httpsPicksTheCertificateBySNIAndRoutesIntoTheMesh() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.routes)

        let api = try await edge.https("api.example.com", "/api/pay/42?x=1", ["-H", "x-mesh-caller: admin", "-H", "X_Mesh_User: root"])
        #expect(api.status == 200, "\(api) \(edge.gateway.logs)")
        #expect(api.body.contains("path=/pay/42?x=1"), "\(api.body)")
        #expect(api.body.contains("caller=edge "), "the app sees the gateway's verified identity only: \(api.body)")
        // The other host's certificate: curl checks the name against the SAN, so a wrong pick fails.
        let www = try await edge.https("www.example.com", "/home")
        #expect(www.status == 200, "\(www)")
        #expect(www.body.contains("path=/home"), "\(www.body)")
        // TLS 1.2 for older clients, TLS 1.3 for the rest.
        let tls12 = try await edge.https("api.example.com", "/api/pay", ["--tlsv1.2", "--tls-max", "1.2"])
        #expect(tls12.status == 200, "\(tls12)")
        let tls13 = try await edge.https("www.example.com", "/home", ["--tlsv1.3"])
        #expect(tls13.status == 200, "\(tls13)")
        // A host or path no GatewayRoute takes.
        let wrongPath = try await edge.https("www.example.com", "/api/pay")
        #expect(wrongPath.status == 404 && wrongPath.headers["x-mesh-error"] == "no-route", "\(wrongPath)")
        let plain = try await edge.http("other.example.com", "/api/pay")
        #expect(plain.status == 404 && plain.headers["x-mesh-error"] == "no-route", "\(plain)")
        // Plain HTTP routes too when it does not redirect.
        let plainAPI = try await edge.http("api.example.com", "/api/pay")
        #expect(plainAPI.status == 200, "\(plainAPI)")

        let metrics = try await edge.metrics()
        #expect(metricValue(metrics, "sidecar_requests_total", ["direction": "gateway", "peer": "payments", "code": "200"]) == 5,
                "\(metrics)")
        #expect(metricValue(metrics, "sidecar_requests_total", ["direction": "gateway", "peer": "unknown", "code": "404"]) == 2)
        #expect(edge.gateway.accessLog.contains("\"direction\":\"gateway\""))

        // Plain HTTP on the HTTPS port is a refused handshake, counted for the gateway.
        _ = try? await curl(["http://127.0.0.1:\(edge.httpsPort)/api/pay"])
        let refusedTLS = try await edge.metrics()
        #expect(metricValue(refusedTLS, "sidecar_tls_handshake_errors_total", ["direction": "gateway", "reason": "not-tls"]) == 1)
    }

    @Test func plainHTTPRedirectsToHTTPS() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let edge = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.routes, redirectToHttps: true)
        let redirect = try await edge.http("api.example.com", "/api/pay?x=1")
        #expect(redirect.status == 308, "\(redirect)")
        #expect(redirect.headers["location"] == "https://api.example.com:\(edge.httpsPort)/api/pay?x=1", "\(redirect)")
        #expect(redirect.headers["x-mesh-error"] == nil)
        // curl follows it to the HTTPS listener (SNI, the right certificate) and reaches the app.
        let followed = try await curl(["-L", "--http1.1", "--cacert", edge.externalCA, "--resolve", "api.example.com:\(edge.httpsPort):127.0.0.1",
                                       "--resolve", "api.example.com:\(edge.httpPort):127.0.0.1",
                                       "http://api.example.com:\(edge.httpPort)/api/pay"])
        // (`curl` keeps both heads with -L: the 308, then the followed answer in the body.)
        #expect(followed.status == 308 && followed.body.hasPrefix("HTTP/1.1 200 OK") && followed.body.contains("path=/pay"),
                "\(followed)")
        #expect(app.requests == 1, "the redirect itself never reached the app")
    }

    /// Admin `/explain` explains a request to the gateway's own listeners: with only a plain
    /// one, on it (and a real plain request gets what it said); with a plain listener that
    /// redirects, `listener=http` is its 308 and naming none is a 400 that names the parameter.
    @Test func explainFollowsTheGatewaysListeners() async throws {
        let app = try await TestHTTPApp(name: "payments-v1")
        let plainOnly = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.routes, https: false)
        let explained = try await curl(["http://127.0.0.1:\(plainOnly.admin)/explain?authority=api.example.com&path=/api/pay"])
        #expect(explained.status == 200 && explained.body.contains("\"listener\":\"http\""), "\(explained.body)")
        #expect(explained.body.contains("\"decision\":\"forward\"") && explained.body.contains("\"upstreamPath\":\"/pay\""), "\(explained.body)")
        let real = try await plainOnly.http("api.example.com", "/api/pay")
        #expect(real.status == 200 && real.body.contains("path=/pay"), "\(real)")
        let noTLS = try await curl(["http://127.0.0.1:\(plainOnly.admin)/explain?authority=api.example.com&listener=https"])
        #expect(noTLS.status == 400 && noTLS.body.contains("no gateway.https listener"), "\(noTLS.body)")

        let redirecting = try await GatewayMesh(backends: [(app, "version: v1")], gatewayResources: Self.routes, redirectToHttps: true)
        let explain = "http://127.0.0.1:\(redirecting.admin)/explain?authority=api.example.com&path=/api/pay"
        let ambiguous = try await curl([explain])
        #expect(ambiguous.status == 400 && ambiguous.body.contains("listener=http or listener=https"), "\(ambiguous.body)")
        let plain = try await curl([explain + "&listener=http"])
        #expect(plain.status == 200 && plain.body.contains("\"decision\":\"answer\"") && plain.body.contains("\"status\":308"), "\(plain.body)")
        #expect(plain.body.contains("\"location\":\"https://api.example.com:\(redirecting.httpsPort)/api/pay\""), "\(plain.body)")
        let secure = try await curl([explain + "&listener=https"])
        #expect(secure.status == 200 && secure.body.contains("\"decision\":\"forward\""), "\(secure.body)")
    }
}
