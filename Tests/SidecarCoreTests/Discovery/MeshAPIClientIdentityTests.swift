import MeshAPI
import MeshTestSupport
import NIOCore
import NIOPosix
import SidecarCore
import Testing

/// The control-plane client trusts one server identity, `spiffe://<td>/control-plane`, not
/// every leaf of the mesh CA: a sidecar's own certificate must not let its holder pose as the
/// control plane and collect the admin token, a join token or a CSR.
@Suite struct MeshAPIClientIdentityTests {
    static let pki = TestPKI()
    static let token = "admin-token-that-must-stay-secret"
    let group = MultiThreadedEventLoopGroup.singleton

    /// A TLS server presenting `identity`'s certificate, answering any request with 200 and
    /// recording the plaintext it receives. Client certificates are optional, as on the API.
    func server(presenting identity: TestIdentity) async throws -> TLSTestServer {
        var configuration = identity.configuration(peerIdentity: .any)
        configuration.certificateVerification = .optional
        let context = try TLSContext(configuration: configuration, role: .server)
        return try await TLSTestServer(group: group, store: TLSContextStore(context), fixture: .http(body: "{}"))
    }

    func client(port: Int, trustDomain: String = "mesh.local") throws -> MeshAPIClient {
        try MeshAPIClient(
            server: "https://127.0.0.1:\(port)", caPEM: Self.pki.rootPEM, token: Self.token, trustDomain: trustDomain)
    }

    @Test func refusesAServerPresentingAWorkloadCertificateOfTheSameCA() async throws {
        let server = try await server(presenting: Self.pki.issue(service: "web"))
        let error = await #expect(throws: MeshAPIClientError.self) {
            try await client(port: server.port).send(.GET, "/v1/resources/routes")
        }
        let expected = SPIFFEID.controlPlane()!
        #expect(error?.kind == .wrongServerIdentity(expected: expected, presented: SPIFFEID.service("web")))
        #expect(error?.description == "https://127.0.0.1:\(server.port) is not the control plane: it presented "
            + "spiffe://mesh.local/service/web, expected spiffe://mesh.local/control-plane; nothing was sent to it")
        // The fake server hears our refusal and never a byte of the request.
        #expect(await eventually { server.errorReasons == [.peerRejected] })
        try await server.close()
        #expect(server.connections.count == 1)
        #expect(server.connections.allSatisfy { $0.receivedCount == 0 })
    }

    @Test func refusesTheControlPlaneIdentityOfAnotherTrustDomain() async throws {
        let server = try await server(presenting: Self.pki.issue(identity: SPIFFEID.controlPlane(trustDomain: "other.org")!))
        let error = await #expect(throws: MeshAPIClientError.self) {
            try await client(port: server.port).send(.POST, "/v1/certificates", body: "{}")
        }
        #expect(error?.kind == .wrongServerIdentity(
            expected: SPIFFEID.controlPlane()!, presented: SPIFFEID.controlPlane(trustDomain: "other.org")))
        try await server.close()
        #expect(server.connections.allSatisfy { $0.receivedCount == 0 })
    }

    @Test func talksToTheControlPlaneIdentityOfItsTrustDomain() async throws {
        let server = try await server(presenting: Self.pki.issue(identity: SPIFFEID.controlPlane(trustDomain: "corp.example")!))
        let response = try await client(port: server.port, trustDomain: "corp.example").send(.GET, "/v1/resources/routes")
        #expect(response.status == 200)
        try await server.close()
        #expect(server.connections.first?.received.contains("authorization: Bearer \(Self.token)") == true)
    }

    @Test func anInvalidTrustDomainIsRefusedUpFront() {
        let error = #expect(throws: MeshAPIClientError.self) {
            try MeshAPIClient(server: "https://127.0.0.1:1", caPEM: Self.pki.rootPEM, token: nil, trustDomain: "Not Valid")
        }
        #expect(error?.description == "trust domain \"Not Valid\" is not a valid SPIFFE trust domain")
    }
}
