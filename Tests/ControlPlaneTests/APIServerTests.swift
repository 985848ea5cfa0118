import ControlPlane
import Foundation
import MeshTestSupport
import NIOCore
import NIOPosix
import SidecarCore
import Testing

/// The HTTPS listener in process: our TLS under NIO's HTTP/1.1 pipeline, body limits, idle close.
@Suite struct APIServerTests {
    @Test func servesOverTLSAndClosesIdleConnections() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        let server = try await APIServer.start(
            host: "127.0.0.1", port: 0, router: fixture.router, authority: fixture.authority, maxBodySize: 1024,
            idleTimeout: .seconds(2))  // generous: a loaded CI machine is slow to handshake
        let url = "https://127.0.0.1:\(server.port)"
        let admin = try MeshAPIClient(server: url, caPEM: fixture.authority.rootPEM, token: ControlPlaneFixture.adminToken)

        let applied = try await admin.send(.POST, "/v1/apply", body: "kind: Service\nname: payments\n")
        #expect(applied.status == 200, "\(applied.body)")
        let tooLarge = try await admin.send(.POST, "/v1/apply", body: String(repeating: "#", count: 2048))
        #expect(tooLarge.status == 413)
        #expect(try fixture.store.currentVersion() == 1)

        // A client that trusts another CA refuses the server.
        let stranger = try CertificateAuthority.create(trustDomain: "mesh.local")
        let misled = try MeshAPIClient(server: url, caPEM: stranger.rootPEM, token: ControlPlaneFixture.adminToken)
        await #expect(throws: MeshAPIClientError.self) { try await misled.send(.GET, "/v1/resources/services") }

        // A watcher that hangs up stops counting as a watcher.
        let current = try fixture.store.currentVersion()
        await #expect(throws: MeshAPIClientError.self) {
            try await admin.send(.GET, "/v1/snapshot/web?version=\(current)", timeout: .milliseconds(300))
        }
        #expect(await eventually(timeout: .seconds(5)) { fixture.controlPlane.metrics.watchers == 0 })

        // A TCP connection that never says anything is closed after the idle timeout.
        let idle = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: server.port).get()
        #expect(await eventually(timeout: .seconds(15)) { !idle.isActive })
        try await server.close()
    }

    /// The flake behind issue 19: a child process spawned while a watch's connection was open
    /// inherited its socket (NIO opens sockets without CLOEXEC), so the client's close sent no
    /// FIN while the child lived and the watcher kept counting. Children now get fds 0-2 only.
    @Test func aWatcherThatHangsUpStopsCountingWhileAChildProcessRuns() async throws {
        let fixture = try ControlPlaneFixture()
        defer { fixture.remove() }
        let server = try await APIServer.start(
            host: "127.0.0.1", port: 0, router: fixture.router, authority: fixture.authority)
        let admin = try MeshAPIClient(
            server: "https://127.0.0.1:\(server.port)", caPEM: fixture.authority.rootPEM, token: ControlPlaneFixture.adminToken)
        let current = try fixture.store.currentVersion()
        let watch = Task { try? await admin.send(.GET, "/v1/snapshot/web?version=\(current)", timeout: .seconds(1)) }
        #expect(await eventually(timeout: .seconds(5)) { fixture.controlPlane.metrics.watchers == 1 })
        let child = try ChildProcess(["sleep", "30"])  // spawned while the watch's connection is open
        defer { child.terminate() }
        #expect(await watch.value == nil, "the watch waits: nothing changed")
        #expect(await eventually(timeout: .seconds(5)) { fixture.controlPlane.metrics.watchers == 0 })
        #expect(child.isRunning)
        try await server.close()
    }
}
