import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import SidecarCore

/// The HTTP/2 codec's own decisions on an `EmbeddedChannel` standing in for one stream: the
/// same filters answer as for HTTP/1.1, in gRPC's form for a gRPC call.
@Suite struct HTTP2StreamProxyHandlerTests {
    let harness: ExchangeHarness
    let stream: EmbeddedChannel

    init(rules: [RouteRule] = [RouteRule()]) throws {
        harness = try ExchangeHarness(rules: rules)
        stream = EmbeddedChannel(loop: harness.loop)
        try stream.pipeline.syncOperations.addHandler(
            HTTP2StreamProxyHandler(side: .outbound, loop: harness.context, accessLog: AccessLog(enabled: false, direction: "test")))
    }

    func send(authority: String, path: String = "/mesh.test.Echo/Unary", grpc: Bool, endStream: Bool = true) throws {
        var headers = HPACKHeaders([(":method", "POST"), (":scheme", "http"), (":authority", authority), (":path", path)])
        if grpc { headers.add(name: "content-type", value: "application/grpc") }
        try stream.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: endStream)))
    }

    func written() throws -> [HTTP2Frame.FramePayload] {
        var frames: [HTTP2Frame.FramePayload] = []
        while let frame = try stream.readOutbound(as: HTTP2Frame.FramePayload.self) { frames.append(frame) }
        return frames
    }

    @Test func aGRPCCallWithNoRouteGetsTrailersOnlyUnimplemented() throws {
        try send(authority: "nosuch", grpc: true)
        let frames = try written()
        #expect(frames.count == 1)
        guard case .headers(let headers) = frames.first else {
            Issue.record("expected one HEADERS frame, got \(frames)")
            return
        }
        #expect(headers.endStream, "trailers-only: the status is the whole answer")
        #expect(headers.headers.first(name: ":status") == "200")
        #expect(headers.headers.first(name: "content-type") == "application/grpc")
        #expect(headers.headers.first(name: "grpc-status") == "12")
        #expect(headers.headers.first(name: "x-mesh-error") == "no-route")
        #expect(headers.headers.first(name: "grpc-message")?.hasPrefix("mesh: no-route: ") == true)
        #expect(harness.metrics.grpcResponses.counter("outbound", "nosuch", "12").value == 1)
    }

    @Test func otherHTTP2RequestsGetTheStatusAndTheTextBody() throws {
        try send(authority: "nosuch", path: "/x", grpc: false)
        let frames = try written()
        guard frames.count == 2, case .headers(let headers) = frames[0], case .data(let data) = frames[1],
            case .byteBuffer(let body) = data.data
        else {
            Issue.record("expected HEADERS and DATA, got \(frames)")
            return
        }
        #expect(headers.headers.first(name: ":status") == "404")
        #expect(headers.headers.first(name: "x-mesh-error") == "no-route")
        #expect(data.endStream)
        #expect(String(buffer: body).hasPrefix("mesh: no-route: "))
    }

    @Test func aRateLimitedCallIsResourceExhausted() throws {
        var rule = RouteRule()
        rule.rateLimit = RateLimit(requestsPerSecond: 1, burst: 1, perCaller: false)
        let limited = try HTTP2StreamProxyHandlerTests(rules: [rule])
        let second = EmbeddedChannel(loop: limited.harness.loop)
        try second.pipeline.syncOperations.addHandler(
            HTTP2StreamProxyHandler(side: .outbound, loop: limited.harness.context, accessLog: AccessLog(enabled: false, direction: "test")))
        try limited.send(authority: "payments", grpc: true, endStream: false)  // takes the one token
        var headers = HPACKHeaders([(":method", "POST"), (":scheme", "http"), (":authority", "payments"), (":path", "/a/B")])
        headers.add(name: "content-type", value: "application/grpc+proto")
        try second.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: true)))
        guard case .headers(let answer) = try second.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no answer")
            return
        }
        #expect(answer.headers.first(name: "grpc-status") == "8")
        #expect(answer.headers.first(name: "x-mesh-error") == "rate-limited")
    }

    @Test func aHeadTheHTTP1ParserRefusesIsABadRequest() throws {
        let parsed = HTTP2StreamProxyHandler.parseHead(
            HPACKHeaders([(":method", "GET"), (":path", "/a%2Fb"), ("x", "1")]), method: "GET", path: "/a%2Fb",
            authority: "payments", allocator: ByteBufferAllocator())
        #expect(parsed.head != nil)
        #expect(parsed.target == nil, "an encoded slash is refused as on HTTP/1.1")
        #expect(parsed.error?.cause == .badRequest)
    }
}

@Suite struct HTTP2PieceTests {
    @Test func thePrefaceIsToldApartFromHTTP1AtTheFirstDifferentByte() {
        #expect(HTTP2Preface.classify(ByteBuffer(string: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")) == .http2)
        #expect(HTTP2Preface.classify(ByteBuffer(string: "PRI * HTTP/2")) == .needMoreBytes)
        #expect(HTTP2Preface.classify(ByteBuffer(string: "PO")) == .http1)
        #expect(HTTP2Preface.classify(ByteBuffer(string: "GET / HTTP/1.1\r\n")) == .http1)
    }

    @Test func grpcTimeoutUnitsAndMalformedValues() {
        #expect(GRPC.timeout("100m") == .milliseconds(100))
        #expect(GRPC.timeout("2S") == .seconds(2))
        #expect(GRPC.timeout("1H") == .hours(1))
        #expect(GRPC.timeout("5u") == .microseconds(5))
        #expect(GRPC.timeout("123456789m") == nil, "at most 8 digits")
        #expect(GRPC.timeout("m") == nil)
        #expect(GRPC.timeout("10x") == nil)
        #expect(GRPC.timeout("-1S") == nil)
    }

    @Test func grpcContentTypes() {
        #expect(GRPC.isGRPC(contentType: "application/grpc"))
        #expect(GRPC.isGRPC(contentType: "application/grpc+proto"))
        #expect(GRPC.isGRPC(contentType: "Application/GRPC;charset=utf-8"))
        #expect(!GRPC.isGRPC(contentType: "application/grpc-web"))
        #expect(!GRPC.isGRPC(contentType: "application/json"))
        #expect(!GRPC.isGRPC(contentType: nil))
    }

    @Test func grpcMessageIsPercentEncoded() {
        #expect(GRPC.percentEncoded("mesh: timeout: 50% ü") == "mesh: timeout: 50%25 %C3%BC")
    }

    @Test func everyMeshCauseHasItsGRPCStatus() {
        #expect(GRPCStatusCode(.noRoute) == .unimplemented)
        #expect(GRPCStatusCode(.connectFailed) == .unavailable)
        #expect(GRPCStatusCode(.circuitOpen) == .unavailable)
        #expect(GRPCStatusCode(.timeout) == .deadlineExceeded)
        #expect(GRPCStatusCode(.rateLimited) == .resourceExhausted)
        #expect(GRPCStatusCode(.forbidden) == .permissionDenied)
        #expect(GRPCStatusCode(.badRequest) == .invalidArgument)
        #expect(GRPCStatusCode(headerValue: "14") == .unavailable)
        #expect(GRPCStatusCode(headerValue: "17") == nil)
        #expect(GRPCStatusCode(headerValue: "x") == nil)
    }

    @Test func requestHeadersAreRewrittenWithTheHTTP1Rules() throws {
        let received = HPACKHeaders([
            (":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/a/../b"),
            ("x-mesh-caller", "forged"), ("X_Mesh_Caller", "forged"), ("host", "payments"), ("keep", "1"), ("x-request-id", "old"),
        ])
        let out = HTTP2Headers.request(
            received, removing: ["x-mesh-caller"], adding: [try HTTPHeaderLine(name: "X-Request-Id", value: "new")], path: "/b")
        #expect(out.map(\.name) == [":method", ":scheme", ":authority", ":path", "keep", "x-request-id"])
        #expect(out.first(name: ":path") == "/b")
        #expect(out.first(name: "x-request-id") == "new")
    }

    @Test func perRequestHopFieldsAreNotIndexedSoTheNextHopsTableHoldsOnlyFieldsThatRepeat() throws {
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var tableSizes: [Int] = []
        for n in 0..<3 {
            let received = HPACKHeaders([
                (":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/pay"),
                ("user-agent", "h2load"), ("x-request-id", "request-\(n)"),
            ])
            let trace = HTTPHeaderLine(generatedName: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e473\(n)-00f067aa0ba902b7-01")
            let out = HTTP2Headers.request(received, removing: [], adding: [trace], path: nil)
            for field in out where field.name == "x-request-id" || field.name == "traceparent" {
                #expect(field.indexable == .nonIndexable, "\(field.name)")
            }
            #expect(out.first { $0.name == "user-agent" }?.indexable == .indexable)
            var wire = ByteBuffer()
            try encoder.encode(headers: out, to: &wire)
            tableSizes.append(encoder.dynamicTableSize)
        }
        #expect(tableSizes[0] > 0, "fields that repeat are indexed")
        #expect(tableSizes == [tableSizes[0], tableSizes[0], tableSizes[0]], "no request adds an entry")
    }

    @Test func grpcRetryConditionsCoverTheirStatusesOnly() {
        let unavailable = RetryStateMachine.Failure.grpcStatus(14)
        #expect(unavailable.isCovered(by: .grpc(.unavailable)))
        #expect(!unavailable.isCovered(by: .grpc(.resourceExhausted)))
        #expect(!unavailable.isCovered(by: .serverError), "5xx is about HTTP statuses")
        #expect(RetryStateMachine.Failure.refusedStream.isCovered(by: .reset), "a refused stream is always safe to retry")
        #expect(RetryCondition(parsing: "deadline-exceeded") == .grpc(.deadlineExceeded))
        #expect(unavailable.reason == "unavailable")
    }
}
