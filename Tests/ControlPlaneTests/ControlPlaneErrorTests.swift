import ControlPlane
import MeshTestSupport
import MeshAPI
import SidecarCore
import Testing

/// `MeshControlPlane` refuses in its own terms (`ControlPlaneError`, no status), and the API
/// answers each refusal with the status and message `APIError` gives it.
@Suite(.sharedEtcdCluster) struct ControlPlaneErrorTests {
    @Test(arguments: StoreBackend.available) func theControlPlaneThrowsDomainErrors(_ backend: StoreBackend) async throws {
        let fixture = try await ControlPlaneFixture(backend)
        defer { fixture.remove() }
        let controlPlane = fixture.controlPlane

        let invalid = await #expect(throws: ControlPlaneError.self) { try await controlPlane.createJoinToken(service: "A/B") }
        guard case .invalid(let message)? = invalid else { Issue.record("\(String(describing: invalid))"); return }
        #expect(message.contains("not a valid service name"))

        let resources = await #expect(throws: ControlPlaneError.self) {
            try await controlPlane.apply(body: "kind: Route\nservice: web\nrules: 3\n", json: false)
        }
        guard case .invalidResources? = resources else { Issue.record("\(String(describing: resources))"); return }

        let missing = await #expect(throws: ControlPlaneError.self) { try await controlPlane.get(kind: .route, name: "web") }
        guard case .notFound? = missing else { Issue.record("\(String(describing: missing))"); return }

        let stranger = #expect(throws: ControlPlaneError.self) { try controlPlane.authenticate(bearer: "no-such-token", peer: nil) }
        guard case .unauthenticated("invalid bearer token")? = stranger else { Issue.record("\(String(describing: stranger))"); return }

        let register = APIMessages.RegisterRequest(service: "payments", address: "127.0.0.1", port: 16006)
        let other = await #expect(throws: ControlPlaneError.self) {
            try await controlPlane.register(register, principal: .service("web"))
        }
        guard case .forbidden? = other else { Issue.record("\(String(describing: other))"); return }

        // A label key an applied Instance could not have is refused at registration too.
        let long = APIMessages.RegisterRequest(
            service: "payments", address: "127.0.0.1", port: 16006, labels: [String(repeating: "k", count: 129): "v"])
        let tooLong = await #expect(throws: ControlPlaneError.self) {
            try await controlPlane.register(long, principal: .service("payments"))
        }
        guard case .invalid(let detail)? = tooLong, detail.contains("longer than 128 characters") else {
            Issue.record("\(String(describing: tooLong))")
            return
        }
    }

    @Test func eachDomainErrorHasItsStatus() {
        let cases: [(ControlPlaneError, Int)] = [
            (.invalid("bad"), 400),
            (.invalidResources(ConfigError(ConfigIssue(file: nil, path: "", message: "invalid YAML: x"))), 400),
            (.invalidResources(ConfigError(ConfigIssue(file: nil, path: "rules", message: "expected a list"))), 422),
            (.notFound("gone"), 404),
            (.unauthenticated("who"), 401),
            (.forbidden("not yours"), 403),
            (.store(.conflict("stale")), 409),
            (.store(.notFound("no row")), 404),
            (.store(.storage("disk")), 500),
            (.certificate(.invalidRequest("bad CSR")), 400),
            (.certificate(.forbidden("other service")), 403),
        ]
        for (error, status) in cases {
            #expect(APIError(error).status == status, "\(error)")
        }
        #expect(APIError(.store(.storage("disk"))).message == "store failed: disk")
        #expect(APIError(.unauthenticated("who")).message == "who")
    }
}
