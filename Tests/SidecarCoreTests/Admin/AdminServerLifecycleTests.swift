import Logging
import MeshTestSupport
import NIOCore
import ServiceLifecycle
import Testing

@testable import SidecarCore

/// The admin server as a `Service` in a `ServiceGroup`: graceful shutdown closes the listener
/// and open keep-alive connections, and `run()` returns.
@Suite struct AdminServerLifecycleTests {
    @Test func gracefulShutdownStopsTheServer() async throws {
        let server = AdminServer(
            port: 0, providers: AdminProviders(metrics: SidecarMetrics().registry, readiness: { .ready }))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [server], gracefulShutdownSignals: [], logger: Logger(label: "admin-test")))
        let running = Task { try await group.run() }
        #expect(await eventually { server.boundPort != nil })
        let port = try #require(server.boundPort)
        #expect(try await AdminServerTests.curl(port, "/live").status == 200)

        // A client holding a keep-alive connection open must not keep the server alive.
        let idle = try ChildProcess([
            "curl", "-s", "--max-time", "20", "http://127.0.0.1:\(port)/live", "--next", "--max-time", "20",
            "--limit-rate", "1", "http://127.0.0.1:\(port)/metrics",
        ])
        defer { idle.terminate() }

        await group.triggerGracefulShutdown()
        let stopped = Task {
            try await running.value
            return true
        }
        #expect(try await stopped.value)
        #expect(server.boundPort == nil)
        let refused = try await ChildProcess.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:\(port)/live"])
        #expect(refused.status != 0)
    }
}

extension AdminServerLifecycleTests {
    @Test func runThrowsWhenThePortIsTaken() async throws {
        let providers = AdminProviders(metrics: SidecarMetrics().registry, readiness: { .ready })
        let first = AdminServer(port: 0, providers: providers)
        let running = Task { try await first.run() }
        defer { running.cancel() }
        #expect(await eventually { first.boundPort != nil })
        let second = AdminServer(port: try #require(first.boundPort), providers: providers)
        await #expect(throws: (any Error).self) { try await second.run() }
    }
}
