import MeshAPI
import MeshTestSupport
import NIOCore
import NIOPosix
import SidecarCore
import Testing

/// The sidecar's control-plane client keeps its connections open (no mTLS handshake per
/// watch or heartbeat), sends again on a new connection when a kept one was closed under it,
/// and the CLI's default stays one connection per request.
@Suite struct MeshAPIClientKeepAliveTests {
    static let pki = TestPKI()

    func server(_ fixture: TLSTestServer.Fixture) async throws -> TLSTestServer {
        var configuration = Self.pki.issue(identity: SPIFFEID.controlPlane()!).configuration(peerIdentity: .any)
        configuration.certificateVerification = .optional
        let context = try TLSContext(configuration: configuration, role: .server)
        return try await TLSTestServer(group: MultiThreadedEventLoopGroup.singleton, store: TLSContextStore(context), fixture: fixture)
    }

    func client(port: Int, keepAlive: Bool) throws -> MeshAPIClient {
        try MeshAPIClient(server: "https://127.0.0.1:\(port)", caPEM: Self.pki.rootPEM, token: "t", keepAlive: keepAlive)
    }

    @Test func requestsShareOneConnection() async throws {
        let server = try await server(.keepAlive(body: "{}", closeQuietly: false))
        let client = try client(port: server.port, keepAlive: true)
        for _ in 0..<5 {
            #expect(try await client.send(.GET, "/v1/snapshot").status == 200)
        }
        #expect(server.connections.count == 1)
        #expect(server.connections.first?.received.components(separatedBy: "GET /v1/snapshot").count == 6)
        #expect(server.connections.first?.received.contains("connection: close") == false)
        try await server.close()
    }

    @Test func aConnectionClosedUnderTheClientIsReplacedUnseen() async throws {
        let server = try await server(.keepAlive(body: "{}", closeQuietly: true))
        let client = try client(port: server.port, keepAlive: true)
        for attempt in 0..<4 {
            var status: Int?
            do { status = try await client.send(.GET, "/v1/snapshot", timeout: .seconds(5)).status } catch {
                Issue.record("request \(attempt): \(error)")
            }
            #expect(status == 200, "request \(attempt)")
        }
        #expect(server.connections.count == 4)
        try await server.close()
    }

    @Test func withoutKeepAliveEachRequestHasItsOwnConnection() async throws {
        let server = try await server(.keepAlive(body: "{}", closeQuietly: false))
        let client = try client(port: server.port, keepAlive: false)
        for _ in 0..<3 {
            #expect(try await client.send(.GET, "/v1/snapshot").status == 200)
        }
        #expect(server.connections.count == 3)
        #expect(server.connections.allSatisfy { $0.received.contains("connection: close") })
        try await server.close()
    }
}
