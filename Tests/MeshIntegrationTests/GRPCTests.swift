import Foundation
import MeshTestSupport
import Testing

/// gRPC end to end with an implementation no one here wrote (Python grpcio, client and server):
/// grpcio client → web's outbound (h2c) → mTLS `h2` → payments' inbound → grpcio app (h2c).
@Suite(.serialized, .enabled(if: GRPCMesh.python != nil, "no .venv with grpcio and grpcio-tools: run scripts/install-deps.sh"))
final class GRPCTests {
    @Test func everyCallShapeWithMetadataTrailersAndTheCallerIdentity() async throws {
        let app = try await GRPCMesh.App(name: "a")
        // Streams are long exchanges: the route timeout (default 15 s) bounds each whole call.
        let mesh = try await GRPCMesh(apps: [app], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: / }
                    timeout: 120s
            """)

        let unary = try await mesh.call("unary")
        #expect(unary["code"] as? String == "OK", "\(unary)")
        #expect(unary["text"] as? String == "hello")
        // The app sees the verified caller, never the forged header the client sent.
        #expect(unary["caller"] as? String == "web")
        #expect((unary["initial"] as? [String: String])?["x-app-initial"] == "meta-in", "metadata both ways: \(unary)")
        #expect((unary["trailing"] as? [String: String])?["x-app-trailer"] == "unary", "\(unary)")

        let serverStream = try await mesh.call("server-stream", arguments: ["--count", "10000", "--size", "100"])
        #expect(serverStream["code"] as? String == "OK", "\(serverStream)")
        #expect(serverStream["received"] as? Int == 10000)
        #expect(serverStream["bytes"] as? Int == 1_000_000)

        let clientStream = try await mesh.call("client-stream", arguments: ["--count", "500", "--size", "1000"])
        #expect(clientStream["code"] as? String == "OK", "\(clientStream)")
        #expect(clientStream["count"] as? Int == 500)
        #expect(clientStream["bytes"] as? Int == 500_000)
        #expect(clientStream["caller"] as? String == "web")

        let bidi = try await mesh.call("bidi", arguments: ["--count", "1000"])
        #expect(bidi["code"] as? String == "OK", "\(bidi)")
        #expect(bidi["echoed"] as? Int == 1000)

        let big = try await mesh.call("big", arguments: ["--size", String(16 << 20)])
        #expect(big["code"] as? String == "OK", "\(big)")
        #expect(big["same"] as? Bool == true, "a 16 MiB message both ways, byte for byte")

        // Metrics and access logs carry the protocol and the gRPC status.
        let metrics = try await mesh.webMetrics()
        #expect(metricValue(metrics, "sidecar_grpc_responses_total", ["direction": "outbound", "peer": "payments", "grpc_status": "0"]) == 5,
                "\(metrics.split(separator: "\n").filter { $0.contains("grpc") })")
        let inbound = try await mesh.paymentsMetrics()
        #expect(metricValue(inbound, "sidecar_grpc_responses_total", ["direction": "inbound", "peer": "web", "grpc_status": "0"]) == 5)
        let line = try #require(mesh.web.accessLog.split(separator: "\n").first { $0.contains("/mesh.test.Echo/Unary") })
        #expect(line.contains("\"protocol\":\"HTTP/2\""), "\(line)")
        #expect(line.contains("\"grpc_status\":0"), "\(line)")
        #expect(line.contains("\"status\":200"), "\(line)")
    }

    @Test func theAppsOwnErrorStatusMessageAndTrailersArriveUnchanged() async throws {
        let app = try await GRPCMesh.App(name: "a")
        let mesh = try await GRPCMesh(apps: [app])
        let failed = try await mesh.call("unary", arguments: ["--fail-code", "5"])
        #expect(failed["code"] as? String == "NOT_FOUND", "\(failed)")
        #expect(failed["details"] as? String == "the app's own error: ünïcode")
        let trailing = failed["trailing"] as? [String: String]
        #expect(trailing?["x-app-trailer"] == "kept" && trailing?["x-app-detail"] == "more", "\(failed)")
        #expect(trailing?["x-mesh-error"] == nil, "an app's status is not the mesh's")
        let metrics = try await mesh.webMetrics()
        #expect(metricValue(metrics, "sidecar_grpc_responses_total", ["direction": "outbound", "peer": "payments", "grpc_status": "5"]) == 1)
    }

    @Test func theMeshsOwnErrorsAreGRPCStatusesWithTheirCause() async throws {
        let app = try await GRPCMesh.App(name: "a")
        let dead = try freeLoopbackPort()
        let mesh = try await GRPCMesh(apps: [app], webResources: """
              - { kind: Instance, service: ledger, address: 127.0.0.1, port: \(dead) }
              - kind: Route
                service: payments
                rules:
                  - match: { path: /mesh.test.Echo/ServerStream }
                    timeout: 300ms
                  - match: { path: /mesh.test.Echo/ClientStream }
                    rateLimit: { requestsPerSecond: 1, burst: 1 }
                  - match: { pathPrefix: /mesh.test.Echo/Unary }
              - kind: Route
                service: ledger
                rules:
                  - match: { pathPrefix: / }
                    retries: { attempts: 1 }
            """)

        func expectMeshError(_ result: [String: Any], _ code: String, _ cause: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(result["code"] as? String == code, "\(result)", sourceLocation: sourceLocation)
            #expect((result["trailing"] as? [String: String])?["x-mesh-error"] == cause, "\(result)", sourceLocation: sourceLocation)
            #expect((result["details"] as? String)?.hasPrefix("mesh: \(cause): ") == true, "\(result)", sourceLocation: sourceLocation)
        }
        // No service by that name, and no rule for the method: UNIMPLEMENTED.
        expectMeshError(try await mesh.call("unary", authority: "nosuch"), "UNIMPLEMENTED", "no-route")
        expectMeshError(try await mesh.call("bidi"), "UNIMPLEMENTED", "no-route")
        // An endpoint nothing listens on: UNAVAILABLE.
        expectMeshError(try await mesh.call("unary", authority: "ledger"), "UNAVAILABLE", "connect-failed")
        // The route's timeout is shorter than the app's delay: DEADLINE_EXCEEDED.
        expectMeshError(
            try await mesh.call("server-stream", arguments: ["--count", "1", "--delay-ms", "3000"]), "DEADLINE_EXCEEDED", "timeout")
        // Over the route's rate limit (1 per second): RESOURCE_EXHAUSTED. Both calls from one
        // client process: two processes started one after the other were over a second apart on
        // a loaded machine, and the bucket had refilled.
        expectMeshError(try await mesh.call("client-stream-twice"), "RESOURCE_EXHAUSTED", "rate-limited")
        let metrics = try await mesh.webMetrics()
        #expect(metricValue(metrics, "sidecar_grpc_responses_total", ["direction": "outbound", "peer": "ledger", "grpc_status": "14"]) == 1)
    }

    @Test func authorizationRefusesACallerWithPermissionDenied() async throws {
        let app = try await GRPCMesh.App(name: "a")
        let mesh = try await GRPCMesh(apps: [app], paymentsResources: """
              - kind: AuthorizationPolicy
                service: payments
                default: deny
                allow: [ { from: [ checkout ] } ]
            """)
        let refused = try await mesh.call("unary")
        #expect(refused["code"] as? String == "PERMISSION_DENIED", "\(refused)")
        #expect((refused["trailing"] as? [String: String])?["x-mesh-error"] == "forbidden")
        #expect(app.calls("Unary") == 0)
    }

    @Test func anUnavailableUnaryCallIsRetriedOnTheNextEndpoint() async throws {
        let down = try await GRPCMesh.App(name: "down", arguments: ["--unavailable"])
        let up = try await GRPCMesh.App(name: "up")
        let mesh = try await GRPCMesh(apps: [down, up], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /mesh.test.Echo/ }
                    retries: { attempts: 3, retryOn: [unavailable], backoff: { base: 5ms, max: 20ms } }
            """)
        let result = try await mesh.call("unary-many", arguments: ["--count", "20"])
        #expect(result["code"] as? String == "OK", "every call succeeds: \(result)")
        #expect((result["instances"] as? [String: Int])?["up"] == 20)
        #expect(down.calls("Unary") > 0, "some calls went to the failing instance first")
        let metrics = try await mesh.webMetrics()
        #expect(metricValue(metrics, "sidecar_retries_total", ["peer": "payments", "reason": "unavailable"]) == Double(down.calls("Unary")))
    }

    @Test func aServerStreamThatSentAMessageIsNotRetried() async throws {
        let app = try await GRPCMesh.App(name: "a", arguments: ["--fail-stream-after", "1"])
        let mesh = try await GRPCMesh(apps: [app], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: /mesh.test.Echo/ }
                    retries: { attempts: 3, retryOn: [unavailable, reset], backoff: { base: 5ms, max: 20ms } }
            """)
        let result = try await mesh.call("server-stream", arguments: ["--count", "5"])
        #expect(result["code"] as? String == "UNAVAILABLE", "\(result)")
        #expect(result["received"] as? Int == 1)
        #expect(app.calls("ServerStream") == 1, "the stream was not sent again")
    }

    @Test func anHTTP1CallerIsTranslatedForTheHTTP2AppWithTrailers() async throws {
        let app = try await GRPCMesh.App(name: "a")
        let mesh = try await GRPCMesh(apps: [app])
        // One gRPC frame by hand: uncompressed, 7 bytes of EchoRequest { text: "hello" }.
        let frame = mesh.directory.url.appendingPathComponent("frame.bin")
        try Data([0, 0, 0, 0, 7, 0x0a, 5] + Array("hello".utf8)).write(to: frame)
        let body = mesh.directory.url.appendingPathComponent("reply.bin")
        let result = try await ChildProcess.run([
            "curl", "-sS", "--http1.1", "-x", "http://127.0.0.1:\(mesh.webOut)", "-D", "-", "-o", body.path,
            "--data-binary", "@\(frame.path)", "-H", "content-type: application/grpc", "-H", "te: trailers",
            "http://payments/mesh.test.Echo/Unary",
        ])
        #expect(result.stdout.hasPrefix("HTTP/1.1 200"), "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("transfer-encoding: chunked"))
        // The app's trailers arrive as HTTP/1.1 chunked trailers.
        #expect(result.stdout.contains("grpc-status: 0"), "\(result.stdout)")
        #expect(result.stdout.contains("x-app-trailer: unary"), "\(result.stdout)")
        let reply = try Data(contentsOf: body)
        #expect(String(decoding: reply, as: UTF8.self).contains("hello"), "the app echoed the message")
        #expect(String(decoding: reply, as: UTF8.self).contains("web"), "and saw the verified caller")
        #expect(app.calls("Unary") == 1)
    }

    /// 1,000 streams at once on one downstream connection (h2load -m 1000); upstream they
    /// spread over pooled connections of at most 100 streams each to a multiplexing app.
    @Test func aThousandConcurrentStreamsOverOneConnectionAllComplete() async throws {
        let app = try await GRPCMesh.App(name: "a")
        let mesh = try await GRPCMesh(apps: [app], webResources: """
              - kind: Route
                service: payments
                rules:
                  - match: { pathPrefix: / }
                    timeout: 120s
            """)
        let frame = mesh.directory.url.appendingPathComponent("frame.bin")
        try Data([0, 0, 0, 0, 7, 0x0a, 5] + Array("hello".utf8)).write(to: frame)
        let result = try await ChildProcess.run(
            ["h2load", "-n", "1000", "-c", "1", "-m", "1000", "-d", frame.path, "-H", ":authority: payments",
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "http://127.0.0.1:\(mesh.webOut)/mesh.test.Echo/Unary"], timeout: .seconds(120))
        #expect(result.stdout.contains("1000 succeeded, 0 failed, 0 errored"), "\(result.stdout)")
        #expect(app.calls("Unary") == 1000)
        let metrics = try await mesh.webMetrics()
        #expect(metricValue(metrics, "sidecar_grpc_responses_total", ["direction": "outbound", "peer": "payments", "grpc_status": "0"]) == 1000)
    }
}
