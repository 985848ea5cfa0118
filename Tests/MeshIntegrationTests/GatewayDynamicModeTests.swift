import Foundation
import MeshTestSupport
import Testing

/// The gateway in dynamic mode: its identity from the control plane (a join token for `edge`),
/// GatewayRoute and AuthenticationPolicy applied with `control-plane apply`, validated there,
/// listed by `get`, and followed while traffic flows.
@Suite(.serialized) struct GatewayDynamicModeTests {
    @Test func gatewayRoutesAndPoliciesComeFromTheControlPlane() async throws {
        let mesh = try await DynamicModeTests.Mesh()
        defer { mesh.stop() }
        try await mesh.declarePayments()
        let app = try await TestHTTPApp(name: "payments-app")
        let payments = try await mesh.sidecar("payments", app: app.port)
        defer { payments.process.stop() }
        #expect(await payments.process.waitUntilListening(ports: [payments.inbound]), "\(payments.process.logs)")

        let keyHash = String(try await ChildProcess.run(["sha256sum"], input: "k-acme").stdout.prefix(64))
        let applied = try await mesh.server.cli(["apply", "-f", "-"], input: """
            kind: GatewayRoute
            name: api
            hosts: [ api.example.com ]
            rules:
              - match: { pathPrefix: /v1/ }
                service: payments
                rewrite: { pathPrefix: /pay/ }
                auth: partners
            ---
            kind: AuthenticationPolicy
            name: partners
            apiKeys: { keys: [ { name: acme, sha256: "\(keyHash)" } ] }
            """)
        #expect(applied.status == 0, "\(applied.stderr)")
        let listed = try await mesh.server.cli(["get", "gatewayroutes"])
        #expect(listed.stdout.contains("api"), "\(listed)")
        let refused = try await mesh.server.cli(["apply", "-f", "-"], input: """
            kind: GatewayRoute
            name: bad
            rules: [ { service: payments, cors: { allowOrigins: [ "not an origin" ] } } ]
            """)
        #expect(refused.status != 0 && refused.stderr.contains("rules[0].cors.allowOrigins[0]"), "\(refused)")

        let token = try await mesh.token("edge")
        let (http, admin) = (try freeLoopbackPort(), try freeLoopbackPort())
        let gateway = try SidecarProcess(configYAML: """
            service: edge
            gateway: { http: { listen: 127.0.0.1:\(http) } }
            admin:   { listen: 127.0.0.1:\(admin) }
            controlPlane: { address: \(mesh.server.url), tokenFile: \(token), caFile: ca.pem, dependencies: [ payments ] }
            """, in: mesh.directory, name: "edge")
        defer { gateway.stop() }
        #expect(await gateway.waitUntilListening(ports: [http]), "\(gateway.logs)")
        let call = ["-H", "Host: api.example.com", "-H", "x-api-key: k-acme", "http://127.0.0.1:\(http)/v1/42"]
        #expect(await eventually(timeout: .seconds(15)) { (try? await curl(call))?.status == 200 }, "\(gateway.logs)")
        let answer = try await curl(call)
        #expect(answer.body.contains("path=/pay/42 caller=edge ") && answer.body.contains("user=acme "), "\(answer)")
        let anonymous = try await curl(["-H", "Host: api.example.com", "http://127.0.0.1:\(http)/v1/42"])
        #expect(anonymous.status == 401, "\(anonymous)")

        // A change applied while the gateway runs: the rule's path moves.
        let moved = try await mesh.server.cli(["apply", "-f", "-"], input: """
            kind: GatewayRoute
            name: api
            hosts: [ api.example.com ]
            rules: [ { match: { pathPrefix: /v2/ }, service: payments, rewrite: { pathPrefix: /pay/ }, auth: partners } ]
            """)
        #expect(moved.status == 0, "\(moved.stderr)")
        let v2 = ["-H", "Host: api.example.com", "-H", "x-api-key: k-acme", "http://127.0.0.1:\(http)/v2/7"]
        #expect(await eventually(timeout: .seconds(15)) { (try? await curl(v2))?.status == 200 }, "\(gateway.logs)")
        #expect(try await curl(call).status == 404)
    }
}
