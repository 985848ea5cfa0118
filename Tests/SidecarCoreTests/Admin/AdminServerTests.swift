import MeshTestSupport
import NIOCore
import Testing

@testable import SidecarCore

/// The admin server over a real socket (port 0), driven with curl: every route, readiness
/// flipping, metrics moving after increments, and shutdown by cancellation.
@Suite struct AdminServerTests {
    struct Reply {
        let status: Int
        let contentType: String
        let body: String
    }

    /// `curl` the URL; the body, then a line with the status and content type.
    static func curl(_ port: Int, _ path: String, method: String = "GET") async throws -> Reply {
        let result = try await ChildProcess.run([
            "curl", "-s", "-S", "--max-time", "10", "-X", method, "-w", "\n%{http_code} %{content_type}",
            "http://127.0.0.1:\(port)\(path)",
        ])
        #expect(result.status == 0, "curl: \(result.stderr)")
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let trailer = lines.removeLast().split(separator: " ", maxSplits: 1)
        return Reply(
            status: Int(trailer.first ?? "") ?? -1, contentType: trailer.count > 1 ? String(trailer[1]) : "",
            body: lines.joined(separator: "\n"))
    }

    @Test func servesEveryRouteAndStopsOnCancellation() async throws {
        let metrics = SidecarMetrics()
        let readiness = AdminRouterTests.ReadinessSwitch()
        readiness.set(.ready)
        let server = AdminServer(
            host: "127.0.0.1", port: 0,
            providers: AdminProviders(
                metrics: metrics.registry, readiness: { readiness.readiness },
                config: { #"{"service":"web"}"# }, clusters: { #"{"clusters":["payments"]}"# }))
        let running = Task { try await server.run() }
        #expect(await eventually { server.boundPort != nil })
        let port = try #require(server.boundPort)
        #expect(port > 0)

        let ready = try await Self.curl(port, "/ready")
        #expect(ready.status == 200 && ready.body == #"{"status":"ready","source":"file"}"# + "\n")
        readiness.set(.draining)
        let draining = try await Self.curl(port, "/ready")
        #expect(draining.status == 503 && draining.body == #"{"status":"draining","source":"file"}"# + "\n")

        #expect(try await Self.curl(port, "/live").status == 200)
        let config = try await Self.curl(port, "/config")
        #expect(config.status == 200 && config.contentType == "application/json" && config.body == #"{"service":"web"}"#)
        #expect(try await Self.curl(port, "/clusters").body == #"{"clusters":["payments"]}"#)
        #expect(try await Self.curl(port, "/missing").status == 404)
        #expect(try await Self.curl(port, "/metrics", method: "POST").status == 405)

        let before = try await Self.curl(port, "/metrics")
        #expect(before.status == 200)
        #expect(before.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(!before.body.contains("sidecar_requests_total{"))
        metrics.requests.handle(direction: .outbound, peer: "payments").record(status: 200, durationNanos: 1_000_000)
        metrics.connectionsOpen(.inbound).increment()
        let after = try await Self.curl(port, "/metrics")
        #expect(after.body.contains(#"sidecar_requests_total{direction="outbound",peer="payments",code="200"} 1"#))
        #expect(after.body.contains(#"sidecar_connections_open{direction="inbound"} 1"#))

        running.cancel()
        try await running.value
        #expect(server.boundPort == nil)
        let refused = try await ChildProcess.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:\(port)/live"])
        #expect(refused.status != 0)
    }
}
