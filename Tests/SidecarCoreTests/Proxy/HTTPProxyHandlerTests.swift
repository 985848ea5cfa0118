import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// The proxy handler's own answers, driven through an `EmbeddedChannel`: everything decided
/// before an upstream is needed (routing, authorization, malformed input, slow heads).
@Suite struct HTTPProxyHandlerTests {
    static let resources: [MeshResource] = [
        .instance(Instance(service: "payments", address: "127.0.0.1", port: 16006)),
        .route(Route(service: "payments", rules: [
            RouteRule(match: RouteMatch(path: .prefix("/pay/teapot")), fault: FaultInjection(abort: .init(percent: 100, status: 418))),
            RouteRule(match: RouteMatch(path: .prefix("/pay"), method: "GET", headers: ["x-canary": "1"])),
            RouteRule(match: RouteMatch(path: .exact("/pay"))),
        ])),
        .authorizationPolicy(AuthorizationPolicy(
            service: "payments", defaultAction: .deny,
            allow: [.init(from: ["web"], methods: ["GET"], pathPrefix: "/pay")])),
        .service(MeshService(name: "empty")),
    ]

    func makeChannel(
        _ direction: HTTPProxyHandler.Direction, service: String = "web",
        timeouts: HTTPProxyHandler.Timeouts = .init()
    ) throws -> (EmbeddedChannel, SidecarMetrics) {
        let channel = EmbeddedChannel()
        let metrics = SidecarMetrics()
        let table = RouteTable(localService: service, trustDomain: "mesh.local", resources: Self.resources, metrics: metrics)
        let loop = LoopContext(
            eventLoop: channel.embeddedEventLoop, table: table,
            connector: SocketUpstreamConnector(clientTLS: nil, tunnelTLS: nil), metrics: metrics)
        try channel.pipeline.syncOperations.addHandler(
            HTTPProxyHandler(direction: direction, loop: loop, accessLog: AccessLog(enabled: false, direction: "test"),
                             timeouts: timeouts))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, metrics)
    }

    func response(_ channel: EmbeddedChannel) throws -> String {
        var all = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        return String(buffer: all)
    }

    @Test func unknownHostIsAnsweredWithNoRouteAndTheConnectionStaysOpen() throws {
        let (channel, metrics) = try makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET /x HTTP/1.1\r\nHost: nowhere\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(text.contains("x-mesh-error: no-route\r\n"))
        #expect(text.hasSuffix("mesh: no-route: no service \"nowhere\" in the mesh\n"))
        #expect(channel.isActive)
        #expect(metrics.requests.handle(direction: .outbound, peer: "unknown").count(status: 404) == 1)
        // A second, pipelined-style request on the same connection is answered too.
        try channel.writeInbound(ByteBuffer(string: "GET /other HTTP/1.1\r\nHost: payments\r\n\r\n"))
        #expect(try response(channel).contains("no route of payments matches GET /other"))
    }

    @Test func serviceWithoutEndpointsIsNoHealthyEndpoint() throws {
        let (channel, _) = try makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: empty.mesh\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 503 "))
        #expect(text.contains("x-mesh-error: no-healthy-endpoint"))
    }

    @Test func smugglingAttemptIsRefusedAndClosed() throws {
        let (channel, _) = try makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(
            string: "POST /pay HTTP/1.1\r\nHost: payments\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(text.contains("x-mesh-error: bad-request"))
        #expect(text.contains("connection: close"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    /// A head refused before it could be an exchange (no Host here) is still counted and
    /// logged as an answer, its response bytes are its body's, as for any other response.
    @Test func aRequestWithoutHostIsAnswered400AndCounted() throws {
        let (channel, metrics) = try makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET /pay HTTP/1.1\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(text.contains("x-mesh-error: bad-request"))
        let unrouted = metrics.requests.handle(direction: .outbound, peer: "unknown")
        #expect(unrouted.count(status: 400) == 1)
        let body = try #require(text.range(of: "\r\n\r\n")).upperBound
        #expect(unrouted.responseBytes.value == UInt64(text[body...].utf8.count))
    }

    @Test func oversizeHeadIs431() throws {
        let (channel, _) = try makeChannel(.outbound)
        let big = String(repeating: "a", count: 70 * 1024)
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: payments\r\nx-big: \(big)\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 431 "))
        #expect(text.contains("x-mesh-error: headers-too-large"))
    }

    @Test func routingLoopIsRefused() throws {
        let (channel, _) = try makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET /pay HTTP/1.1\r\nHost: payments\r\nx-mesh-hops: 8\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 508 "))
        #expect(text.contains("x-mesh-error: loop-detected"))
    }

    @Test func inboundRefusesCallersTheAuthorizationPolicyDoesNotAllow() throws {
        let (channel, metrics) = try makeChannel(.inbound(app: HostPort(host: "127.0.0.1", port: 9)), service: "payments")
        let info = TLSHandshakeInfo(
            peerIdentity: SPIFFEID.service("orders"), negotiatedProtocol: "http/1.1", serverName: "payments",
            resumed: false, protocolVersion: "TLSv1.3", peerCertificateNotAfter: nil)
        channel.pipeline.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(info))
        try channel.writeInbound(ByteBuffer(string: "GET /pay HTTP/1.1\r\nHost: payments\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(text.contains("x-mesh-error: forbidden"))
        #expect(text.contains("mesh: forbidden: orders may not GET /pay"))
        #expect(metrics.requests.handle(direction: .inbound, peer: "orders").count(status: 403) == 1)
    }

    @Test func slowHeadGets408() throws {
        let (channel, _) = try makeChannel(.outbound, timeouts: .init(requestHead: .seconds(2), idle: .seconds(60)))
        try channel.writeInbound(ByteBuffer(string: "GET /pay HTTP/1.1\r\nHo"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try response(channel).isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test func idleKeepAliveConnectionIsClosed() throws {
        let (channel, _) = try makeChannel(.outbound, timeouts: .init(requestHead: .seconds(2), idle: .seconds(60)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func faultInjectionAbortsWithTheConfiguredStatus() throws {
        let (channel, _) = try makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET /pay/teapot HTTP/1.1\r\nHost: payments\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 418 "))
        #expect(text.contains("x-mesh-error: fault-injected"))
    }

    @Test func rulesMatchPathExactPrefixMethodAndHeaders() throws {
        let table = RouteTable(localService: "web", trustDomain: "mesh.local", resources: Self.resources)
        let payments = try #require(table.destination(forHost: "payments.mesh:80"))
        let canary = payments.rule(path: "/pay/x", method: "GET", header: { $0 == "x-canary" ? "1" : nil })
        #expect(canary?.match.headers == ["x-canary": "1"])
        #expect(payments.rule(path: "/pay/x", method: "GET", header: { _ in nil }) == nil)
        #expect(payments.rule(path: "/pay/x", method: "POST", header: { $0 == "x-canary" ? "1" : nil }) == nil)
        #expect(payments.rule(path: "/pay", method: "POST", header: { _ in nil })?.match.path == .exact("/pay"))
        #expect(table.destination(forHost: "nowhere") == nil)
    }
}

/// Hostile request heads the proxy answers itself: ambiguous paths, forged hop counts,
/// a path escaping the allowed prefix, an oversized head arriving in pieces.
@Suite struct HTTPProxyHandlerHostileInputTests {
    let base = HTTPProxyHandlerTests()

    @Test(arguments: ["/pay/..%2fadmin", "/pay/..\\admin", "/pay/%c0%ae%c0%ae/admin", "/pay/..;/admin", "ftp://payments/pay"])
    func ambiguousPathsAre400(target: String) throws {
        let (channel, _) = try base.makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET \(target) HTTP/1.1\r\nHost: payments\r\n\r\n"))
        let text = try base.response(channel)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(target): \(text)")
        #expect(text.contains("x-mesh-error: bad-request"))
    }

    @Test(arguments: ["-1000", "-1", "abc", "1e3", "0x1", "+1", "99999", ""])
    func aForgedHopCountIs400(value: String) throws {
        let (channel, _) = try base.makeChannel(.outbound)
        try channel.writeInbound(ByteBuffer(string: "GET /pay HTTP/1.1\r\nHost: payments\r\nx-mesh-hops: \(value)\r\n\r\n"))
        let text = try base.response(channel)
        #expect(text.hasPrefix("HTTP/1.1 400 "), "\(value): \(text)")
        #expect(text.contains("x-mesh-hops must be a small non-negative integer"))
    }

    @Test func routePrefixesMatchWholeSegments() throws {
        let (channel, _) = try base.makeChannel(.outbound)
        // `/pay/teapot` aborts with 418; `/pay/teapotx` is another segment and matches no rule.
        try channel.writeInbound(ByteBuffer(string: "GET /pay/teapotx HTTP/1.1\r\nHost: payments\r\n\r\n"))
        #expect(try base.response(channel).hasPrefix("HTTP/1.1 404 "))
        try channel.writeInbound(ByteBuffer(string: "GET /pay/x/../teapot/%2e/cup HTTP/1.1\r\nHost: payments\r\n\r\n"))
        #expect(try base.response(channel).hasPrefix("HTTP/1.1 418 "), "routing sees the normalized path")
    }

    @Test(arguments: ["/pay/../admin/secret.txt", "/pay/%2e%2e/admin/secret.txt", "/pay/%2E%2e/admin", "/payroll", "//admin"])
    func inboundAuthorizesTheNormalizedPath(target: String) throws {
        let (channel, metrics) = try base.makeChannel(.inbound(app: HostPort(host: "127.0.0.1", port: 9)), service: "payments")
        let info = TLSHandshakeInfo(
            peerIdentity: SPIFFEID.service("web"), negotiatedProtocol: "http/1.1", serverName: "payments",
            resumed: false, protocolVersion: "TLSv1.3", peerCertificateNotAfter: nil)
        channel.pipeline.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(info))
        try channel.writeInbound(ByteBuffer(string: "GET \(target) HTTP/1.1\r\nHost: payments\r\n\r\n"))
        let text = try base.response(channel)
        #expect(text.hasPrefix("HTTP/1.1 403 Forbidden\r\n"), "\(target): \(text)")
        #expect(metrics.authzDenied(caller: "web").value == 1)
    }

    /// A head with no line end reaches the 64 KiB limit in TLS-record-sized pieces: the answer
    /// is 431 as soon as the limit is reached, not a stall until the head timeout.
    @Test(arguments: [16 * 1024, 4096, 1000, 65536, 70 * 1024])
    func anOversizedHeadInPiecesIs431AtTheLimit(piece: Int) throws {
        let (channel, _) = try base.makeChannel(.outbound)
        var sent = 0
        let line = "GET /" + String(repeating: "a", count: 100 * 1024)
        let bytes = Array(line.utf8)
        var answer = ""
        while sent < bytes.count, answer.isEmpty {
            let end = min(sent + piece, bytes.count)
            try channel.writeInbound(ByteBuffer(bytes: bytes[sent..<end]))
            sent = end
            answer = try base.response(channel)
        }
        #expect(answer.hasPrefix("HTTP/1.1 431 "), "after \(sent) bytes: \(answer)")
        #expect(sent < 64 * 1024 + piece, "answered only after \(sent) bytes")
    }
}
