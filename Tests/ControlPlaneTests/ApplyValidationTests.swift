import ControlPlane
import MeshTestSupport
import MeshAPI
import Foundation
import SidecarCore
import Testing

/// Operator input through `POST /v1/apply`: validation errors name document, field and line;
/// a multi-document apply is all or nothing.
@Suite(.sharedEtcdCluster) struct ApplyValidationTests {
    static let route = """
        kind: Route
        service: payments
        rules:
          - match: { pathPrefix: /pay }
            timeout: 2s
            backends: [ { subset: { version: v1 }, weight: 100 } ]
        """

    @Test(arguments: StoreBackend.available) func invalidFieldIs422NamingDocumentFieldAndLine(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let body = Self.route + "\n---\nkind: Route\nservice: web\nrules:\n  - match: { pathPrefix: / }\n    timeout: 2x\n"
        let response = await fixture.request("POST", "/v1/apply", body: body)
        #expect(response.status == 422)
        let message = jsonObject(response.body)["error"] as? String ?? ""
        #expect(message.contains("line 12"), "\(message)")
        #expect(message.contains("document 2 (Route web)"), "\(message)")
        #expect(message.contains("rules[0].timeout"), "\(message)")
        // All or nothing: the valid first document was not stored either.
        #expect(try fixture.store.list(kind: nil).isEmpty)
        #expect(try fixture.store.currentVersion() == fixture.initialVersion)
    }

    @Test(arguments: StoreBackend.available) func yamlSyntaxErrorIs400WithLine(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let response = await fixture.request("POST", "/v1/apply", body: "kind: Route\nservice: [payments\nrules: []\n")
        #expect(response.status == 400)
        let message = jsonObject(response.body)["error"] as? String ?? ""
        #expect(message.contains("invalid YAML") && message.contains("line"), "\(message)")
    }

    @Test(arguments: StoreBackend.available) func unknownKindIsRefusedWithItsName(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let response = await fixture.request("POST", "/v1/apply", body: "kind: Gateway\nname: x\n")
        #expect(response.status == 422)
        #expect(response.body.contains("Gateway"), "\(response.body)")
    }

    @Test(arguments: StoreBackend.available) func jsonBodyIsAccepted(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let response = await fixture.request(
            "POST", "/v1/apply", body: #"[{"kind":"Service","name":"payments"},{"kind":"Service","name":"web"}]"#,
            contentType: "application/json")
        #expect(response.status == 200, "\(response.body)")
        #expect(try fixture.store.list(kind: .service).map(\.name) == ["payments", "web"])
    }

    @Test(arguments: StoreBackend.available) func appliedResourcesComeBackWithVersions(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let applied = await fixture.request("POST", "/v1/apply", body: Self.route)
        #expect(applied.status == 200, "\(applied.body)")
        let got = await fixture.request("GET", "/v1/resources/routes/payments")
        #expect(got.status == 200)
        let resource = try MeshResourceDecoder.decodeJSON(got.body)
        #expect(resource.first?.resourceVersion == fixture.version)
        #expect(resource.first?.service == "payments")
        let missing = await fixture.request("GET", "/v1/resources/route/nothing")
        #expect(missing.status == 404)
        let badKind = await fixture.request("GET", "/v1/resources/gateways")
        #expect(badKind.status == 404)
        #expect(badKind.body.contains("unknown kind"))
    }

    @Test(arguments: StoreBackend.available) func staleResourceVersionIs409AndRollsBackTheWholeApply(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        _ = await fixture.request("POST", "/v1/apply", body: "kind: Service\nname: payments\n")
        let first = fixture.version
        _ = await fixture.request("POST", "/v1/apply", body: "kind: Service\nname: payments\nport: 80\n")
        let stale = "kind: Service\nname: web\n---\nkind: Service\nname: payments\nport: 81\nresourceVersion: \"\(first)\"\n"
        let response = await fixture.request("POST", "/v1/apply", body: stale)
        #expect(response.status == 409)
        let message = jsonObject(response.body)["error"] as? String ?? ""
        #expect(message.contains("Service payments") && message.contains("stale"), "\(message)")
        #expect(try fixture.store.get(kind: .service, name: "web") == nil)
        // Without a resourceVersion it overwrites.
        let overwrite = await fixture.request("POST", "/v1/apply", body: "kind: Service\nname: payments\nport: 81\n")
        #expect(overwrite.status == 200)
    }

    @Test(arguments: StoreBackend.available) func oversizedOrEmptyInputIsRefused(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let empty = await fixture.request("POST", "/v1/apply", body: "---\n")
        #expect(empty.status == 400)

        // The size limit lives in the HTTPS server, so this goes over the wire, to a server with
        // the default limit (1 MiB). The body is a valid document padded with a comment: only
        // its size can refuse it.
        let server = try await APIServer.start(
            host: "127.0.0.1", port: 0, router: fixture.router, authority: fixture.authority)
        let admin = try MeshAPIClient(
            server: "https://127.0.0.1:\(server.port)", caPEM: fixture.authority.rootPEM, token: ControlPlaneFixture.adminToken)
        func document(bytes: Int) -> String {
            let head = "kind: Service\nname: payments\n# "
            return head + String(repeating: "x", count: bytes - head.utf8.count - 1) + "\n"
        }
        let oversized = try await admin.send(.POST, "/v1/apply", body: document(bytes: (1 << 20) + 1))
        #expect(oversized.status == 413, "\(oversized.body)")
        #expect(try fixture.store.list(kind: nil).isEmpty, "nothing stored")
        #expect(try fixture.store.currentVersion() == fixture.initialVersion)
        // At the limit it is accepted: the limit is the size, not something else about the body.
        let atLimit = try await admin.send(.POST, "/v1/apply", body: document(bytes: 1 << 20))
        #expect(atLimit.status == 200, "\(atLimit.body)")
        #expect(try fixture.store.list(kind: .service).map(\.name) == ["payments"])
        try await server.close()
    }
}
