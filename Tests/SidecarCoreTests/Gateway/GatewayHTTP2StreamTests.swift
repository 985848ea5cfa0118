import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import SidecarCore

/// A gateway's HTTP/2 stream on a frame-mode connection (`HTTP2DownstreamChannel`): the
/// gateway's filters answer it as they answer HTTP/1.1 (CORS preflight at the edge, 401 with
/// `WWW-Authenticate`, 413 for a body of no declared length that outgrows the limit), written
/// as HTTP/2 frames; and the cache's HTTP/1.1 form read back as content.
@Suite struct GatewayHTTP2StreamTests {
    /// One gateway stream on a harness of `rule` (and `policies`).
    struct Stream {
        let harness: ExchangeHarness
        let connection: HTTP2DownstreamChannel

        init(_ rule: GatewayRule, policies: [AuthenticationPolicy] = []) throws {
            let route = GatewayRoute(name: "api", hosts: ["api.example.com"], rules: [rule])
            harness = try ExchangeHarness(
                rules: [RouteRule(retries: RetryPolicy(attempts: 1))],
                extraResources: [.gatewayRoute(route)] + policies.map { .authenticationPolicy($0) })
            connection = try HTTP2DownstreamChannel(.gateway(GatewayListenerRole(secure: true), client: "192.0.2.7"), harness: harness)
        }

        func send(_ method: String, _ path: String, _ fields: [(String, String)] = [], endStream: Bool = true) throws {
            try connection.send(
                head: [(":method", method), (":scheme", "https"), (":authority", "api.example.com:8443"), (":path", path)] + fields,
                endStream: endStream)
        }

        func written() throws -> [HTTP2Frame.FramePayload] {
            try connection.written()
        }

        func head(_ frames: [HTTP2Frame.FramePayload]) -> HPACKHeaders? {
            guard case .headers(let headers) = frames.first else { return nil }
            return headers.headers
        }
    }

    @Test func aPreflightIsAnsweredAtTheEdge() throws {
        let cors = CORSPolicy(allowOrigins: ["https://app.example.com"], allowMethods: ["GET", "POST"])
        let s = try Stream(GatewayRule(service: "payments", cors: cors))
        try s.send("OPTIONS", "/x", [("origin", "https://app.example.com"), ("access-control-request-method", "POST")])
        let frames = try s.written()
        let head = try #require(s.head(frames), "\(frames)")
        #expect(frames.count == 1 && head.first(name: ":status") == "204", "\(frames)")
        #expect(head.first(name: "access-control-allow-origin") == "https://app.example.com")
        #expect(head.first(name: "x-mesh-error") == nil && head.first(name: "content-length") == nil)
        #expect(s.harness.upstreams.connections.isEmpty)
        #expect(s.harness.metrics.requests.handle(direction: .gateway, peer: "payments").count(status: 204) == 1)
    }

    @Test func aMissingCredentialIs401WithTheChallenge() throws {
        let policy = AuthenticationPolicy(name: "keys", apiKeys: .init(keys: [.init(name: "acme", sha256: GatewayAuthenticatorTests.sha256("k1"))]))
        let s = try Stream(GatewayRule(service: "payments", auth: "keys"), policies: [policy])
        try s.send("GET", "/x")
        let head = try #require(s.head(try s.written()))
        #expect(head.first(name: ":status") == "401" && head.first(name: "x-mesh-error") == "unauthenticated")
        #expect(head.first(name: "www-authenticate") == "ApiKey realm=\"keys\", header=\"x-api-key\"", "\(head)")
        #expect(s.harness.metrics.gatewayAuthFailures(policy: "keys", reason: .missing).value == 1)
    }

    @Test func aRefusalToAnAllowedOriginCarriesTheOrigin() throws {
        let cors = CORSPolicy(allowOrigins: ["https://app.example.com"], allowMethods: ["GET"])
        let policy = AuthenticationPolicy(name: "keys", apiKeys: .init(keys: [.init(name: "acme", sha256: GatewayAuthenticatorTests.sha256("k1"))]))
        let s = try Stream(GatewayRule(service: "payments", auth: "keys", cors: cors), policies: [policy])
        try s.send("GET", "/x", [("origin", "https://app.example.com")])
        let head = try #require(s.head(try s.written()))
        #expect(head.first(name: ":status") == "401" && head.first(name: "access-control-allow-origin") == "https://app.example.com", "\(head)")
    }

    @Test func aBodyOfNoDeclaredLengthOverTheLimitIs413ThenTheCallerIsStopped() throws {
        let s = try Stream(GatewayRule(service: "payments", maxBodyBytes: 10))
        try s.send("POST", "/x", endStream: false)
        try s.connection.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "hello world")))))
        let frames = try s.written()
        #expect(s.head(frames)?.first(name: ":status") == "413", "\(frames)")
        // The reset follows once the answer is out (a reset written with it would drop it).
        s.harness.loop.run()
        guard case .rstStream(.noError) = try s.written().first else {
            Issue.record("no RST_STREAM(NO_ERROR) after the answer")
            return
        }
    }

    @Test func aChunkedEntryReadsBackAsItsContent() throws {
        var bytes = ByteBuffer(string: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        var parser = HTTPHeadParser()
        let head = try #require(try parser.parseResponse(&bytes, requestMethod: .GET))
        let entry = CachedResponse(head: head, body: ByteBuffer(string: "5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nx-t: 1\r\n\r\n"))
        #expect(String(buffer: entry.content) == "hello world")
    }
}
