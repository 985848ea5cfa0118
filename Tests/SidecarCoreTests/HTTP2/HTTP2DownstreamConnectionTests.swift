import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import SidecarCore

/// A caller's HTTP/2 connection in frame mode (`HTTP2DownstreamConnection` on an
/// `EmbeddedChannel` standing in for NIOHTTP2): each stream's exchange answers as the same
/// filters answer HTTP/1.1 (in gRPC's form for a gRPC call); streams over the limit are refused;
/// WINDOW_UPDATEs are given back only while an exchange takes more.
@Suite struct HTTP2DownstreamConnectionTests {
    let harness: ExchangeHarness
    let connection: HTTP2DownstreamChannel

    init(rules: [RouteRule] = [RouteRule()], maxStreams: Int = HTTP2Settings.maxDownstreamStreams) throws {
        harness = try ExchangeHarness(rules: rules)
        connection = try HTTP2DownstreamChannel(harness: harness, maxStreams: maxStreams)
    }

    func send(
        authority: String, path: String = "/mesh.test.Echo/Unary", grpc: Bool, endStream: Bool = true, on stream: HTTP2StreamID = 1
    ) throws {
        var fields = [(":method", "POST"), (":scheme", "http"), (":authority", authority), (":path", path)]
        if grpc { fields.append(("content-type", "application/grpc")) }
        try connection.send(head: fields, on: stream, endStream: endStream)
    }

    func written() throws -> [HTTP2Frame.FramePayload] {
        try connection.written()
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
        let limited = try HTTP2DownstreamConnectionTests(rules: [rule])
        let second = try HTTP2DownstreamChannel(harness: limited.harness)
        try limited.send(authority: "payments", grpc: true, endStream: false)  // takes the one token
        try second.send(
            head: [(":method", "POST"), (":scheme", "http"), (":authority", "payments"), (":path", "/a/B"), ("content-type", "application/grpc+proto")])
        guard case .headers(let answer) = try second.written().first else {
            Issue.record("no answer")
            return
        }
        #expect(answer.headers.first(name: "grpc-status") == "8")
        #expect(answer.headers.first(name: "x-mesh-error") == "rate-limited")
    }

    @Test func aHeadTheHTTP1ParserRefusesIsABadRequest() throws {
        let parsed = HTTP2StreamExchange.parseHead(
            HPACKHeaders([(":method", "GET"), (":path", "/a%2Fb"), (":authority", "payments"), ("x", "1")]), allocator: ByteBufferAllocator())
        #expect(parsed.head != nil)
        #expect(parsed.head?.headers.firstValue(named: "host") == "payments")
        #expect(parsed.target == nil, "an encoded slash is refused as on HTTP/1.1")
        #expect(parsed.error?.cause == .badRequest)
    }
}

extension HTTP2DownstreamConnectionTests {
    @Test func theHeadIsReadInOnePassWithHostFromAuthorityOrTheFirstHostField() throws {
        let parsed = HTTP2StreamExchange.parseHead(
            HPACKHeaders([
                (":method", "POST"), (":scheme", "http"), (":authority", "payments"), (":path", "/a/B?x=1"), ("host", "other"),
                ("content-type", "application/grpc"), ("grpc-timeout", "5S"), ("content-type", "text/plain"), ("x-a", "1"),
            ]), allocator: ByteBufferAllocator())
        #expect(parsed.method == "POST" && parsed.path == "/a/B?x=1" && parsed.authority == "payments")
        #expect(parsed.contentType == "application/grpc" && parsed.grpcTimeout == "5S")
        let head = try #require(parsed.head)
        #expect(head.headers.values(named: "host") == ["payments"], "one authority, the one routing saw")
        #expect(head.headers.firstValue(named: "x-a") == "1")
        #expect(parsed.target?.path == "/a/B")
        let hostOnly = HTTP2StreamExchange.parseHead(
            HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x-a", "1"), ("host", "b"), ("host", "c")]),
            allocator: ByteBufferAllocator())
        #expect(hostOnly.authority == "b")
        #expect(hostOnly.head?.headers.values(named: "host") == ["b"])
        let noAuthority = HTTP2StreamExchange.parseHead(
            HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":path", "/")]), allocator: ByteBufferAllocator())
        #expect(noAuthority.authority == "")
    }

    @Test func streamsGoToTheirOwnExchangesAndOneOverTheLimitIsRefused() throws {
        let t = try HTTP2DownstreamConnectionTests(maxStreams: 2)
        try t.send(authority: "nosuch", grpc: true, endStream: false, on: 1)  // answered, stays open
        try t.send(authority: "nosuch", path: "/x", grpc: false, endStream: false, on: 3)
        try t.send(authority: "nosuch", grpc: true, on: 5)
        let frames = try t.connection.frames()
        #expect(frames.first?.streamID == .rootStream, "the connection window opened at the first frame")
        if case .windowUpdate(let increment) = frames.first?.payload {
            #expect(increment == HTTP2Settings.connectionWindow - 65_535)
        } else {
            Issue.record("no connection WINDOW_UPDATE first: \(frames)")
        }
        #expect(frames.filter { $0.streamID == 1 && !$0.isReset }.count == 1, "trailers-only on stream 1")
        #expect(frames.filter { $0.streamID == 3 && !$0.isReset }.count == 2, "HEADERS and DATA on stream 3")
        guard let refused = frames.last(where: { $0.streamID == 5 }), case .rstStream(.refusedStream) = refused.payload else {
            Issue.record("stream 5 not refused: \(frames)")
            return
        }
        // NIOHTTP2 closes a stream: its slot is free again.
        t.connection.closed(1)
        try t.send(authority: "nosuch", grpc: true, on: 7)
        #expect(try t.connection.frames().filter { $0.streamID == 7 && !$0.isReset }.count == 1, "stream 7 answered")
        #expect(t.harness.metrics.grpcResponses.counter("outbound", "nosuch", "12").value == 2)
    }

    @Test func aStreamsWindowIsGivenBackOnlyWhileItsExchangeTakesMore() throws {
        let fault = FaultInjection(delay: .init(percent: 100, duration: .milliseconds(500)))
        let t = try HTTP2DownstreamConnectionTests(rules: [RouteRule(fault: fault)])
        try t.send(authority: "payments", path: "/x", grpc: false, endStream: false)
        _ = try t.connection.frames()
        try t.connection.send(.data(.init(data: .byteBuffer(ByteBuffer(repeating: 1, count: 1000)))))
        t.connection.windowNow(HTTP2Settings.streamWindow / 4, on: 1)
        #expect(try t.connection.frames().isEmpty, "held back while the fault delay holds the exchange")
        // The delay ends; the try goes to an upstream that never answers (the harness has no
        // HTTP/2 peer), so the window stays held; the route timeout answers 504, the exchange
        // takes frames again (and drops them), so the window is given back.
        t.harness.loop.advanceTime(by: .milliseconds(500))
        #expect(try t.connection.frames().isEmpty)
        t.harness.loop.advanceTime(by: .seconds(60))
        let frames = try t.connection.frames()
        #expect(frames.contains { if case .headers(let h) = $0.payload { h.headers.first(name: ":status") == "504" } else { false } })
        let updates = frames.compactMap { frame -> Int? in
            guard frame.streamID == 1, case .windowUpdate(let increment) = frame.payload else { return nil }
            return increment
        }
        #expect(updates == [HTTP2Settings.streamWindow - HTTP2Settings.streamWindow / 4], "\(frames)")
        t.connection.windowNow(HTTP2Settings.connectionWindow / 2, on: .rootStream)
        guard case .windowUpdate(let increment) = try t.connection.frames().first?.payload else {
            Issue.record("no connection WINDOW_UPDATE at half")
            return
        }
        #expect(increment == HTTP2Settings.connectionWindow / 2)
    }

    @Test func aResetFromTheCallerEndsItsExchangeAsAborted() throws {
        let fault = FaultInjection(delay: .init(percent: 100, duration: .milliseconds(500)))
        let t = try HTTP2DownstreamConnectionTests(rules: [RouteRule(fault: fault)])
        try t.send(authority: "payments", path: "/x", grpc: false)
        try t.connection.send(.rstStream(.cancel))
        t.connection.closed(1)
        #expect(t.connection.connection.machine.streams.isEmpty)
        #expect(t.harness.metrics.requests.handle(direction: .outbound, peer: "payments").count(status: 0) == 1)
        t.harness.loop.advanceTime(by: .milliseconds(500))
        #expect(try t.written().isEmpty, "nothing more for a stream the caller reset")
    }

    /// NIOHTTP2's header validation is off (`HTTP2Settings`): the connection refuses what it
    /// refused, with RST_STREAM(PROTOCOL_ERROR), before any exchange sees the head.
    @Test func aMalformedHeadIsResetWithProtocolErrorAndReachesNoExchange() throws {
        let heads: [[(String, String)]] = [
            [(":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/"), ("X-Upper", "1")],
            [(":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/"), ("connection", "close")],
            [(":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/"), ("te", "gzip")],
            [(":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/"), ("x", "1\r\nx-mesh-caller: forged")],
            [(":method", "GET"), (":authority", "payments"), (":path", "/")],
            [("x", "1"), (":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/")],
        ]
        for (index, head) in heads.enumerated() {
            let id = HTTP2StreamID(2 * index + 1)
            try connection.send(head: head, on: id)
            let written = try connection.frames().filter { $0.streamID == id }
            guard written.count == 1, case .rstStream(.protocolError) = written[0].payload else {
                Issue.record("\(head): expected RST_STREAM(PROTOCOL_ERROR), got \(written)")
                continue
            }
        }
        #expect(connection.connection.machine.streams.isEmpty, "no exchange was made")
        #expect(harness.metrics.requests.handle(direction: .outbound, peer: "payments").count(status: 0) == 0)
        // Malformed trailers on an open stream: reset too (its exchange ends when NIOHTTP2 closes it).
        try send(authority: "payments", path: "/x", grpc: false, endStream: false, on: 101)
        try connection.send(.headers(.init(headers: HPACKHeaders([("connection", "close")]), endStream: true)), on: 101)
        guard case .rstStream(.protocolError) = try connection.frames().last(where: { $0.streamID == 101 })?.payload else {
            Issue.record("malformed trailers not reset")
            return
        }
    }

    /// NIOHTTP2's content-length check is off (`HTTP2Settings`): a body that does not add up to
    /// its `content-length` is refused here, as NIOHTTP2 refused it.
    @Test func aRequestBodyShortOfItsContentLengthIsResetWithProtocolError() throws {
        try connection.send(
            head: [(":method", "POST"), (":scheme", "http"), (":authority", "payments"), (":path", "/x"), ("content-length", "10")],
            endStream: false)
        try connection.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "abc")), endStream: true)))
        guard case .rstStream(.protocolError) = try connection.frames().last(where: { $0.streamID == 1 })?.payload else {
            Issue.record("a short body not reset")
            return
        }
    }

    @Test func aResponseBlockTheSidecarMadeWronglyIsNotSentTheStreamIsReset() throws {
        connection.connection.write(.headers(.init(headers: HPACKHeaders([(":status", "200"), ("Content-Type", "x")]))), on: 1, checked: false)
        connection.connection.write(.headers(.init(headers: HPACKHeaders([("grpc-status", "0")]), endStream: true)), on: 3, checked: false)
        // A block relayed as an upstream connection received (and checked) it is not checked again.
        connection.connection.write(.headers(.init(headers: HPACKHeaders([(":status", "200"), ("X-Relayed", "x")]))), on: 5, checked: true)
        connection.connection.flush()
        let frames = try connection.frames()
        guard frames.count == 3, case .rstStream(.internalError) = frames[0].payload, case .headers = frames[1].payload,
            case .headers = frames[2].payload
        else {
            Issue.record("expected RST_STREAM(INTERNAL_ERROR) on 1, trailers on 3 and the relayed head on 5, got \(frames)")
            return
        }
    }

    @Test func theConnectionClosingEndsEveryExchangeLeft() throws {
        let fault = FaultInjection(delay: .init(percent: 100, duration: .milliseconds(500)))
        let t = try HTTP2DownstreamConnectionTests(rules: [RouteRule(fault: fault)])
        try t.send(authority: "payments", path: "/x", grpc: false, on: 1)
        try t.send(authority: "payments", path: "/y", grpc: false, on: 3)
        #expect(t.connection.connection.machine.streams.count == 2)
        t.connection.channel.pipeline.fireChannelInactive()
        #expect(t.connection.connection.machine.streams.isEmpty)
        #expect(t.harness.metrics.requests.handle(direction: .outbound, peer: "payments").count(status: 0) == 2)
    }

    /// Drain as gRPC servers do it (RFC 9113 §6.8): GOAWAY with the largest id and a PING; at the
    /// PING's ack GOAWAY with the last stream opened (one the caller sent before it saw the first
    /// included); the connection closes once those streams are closed, not before.
    @Test func drainSendsGoawayThenTheLastStreamAtThePingAckAndClosesOnceItsStreamsAreClosed() throws {
        let fault = FaultInjection(delay: .init(percent: 100, duration: .milliseconds(500)))
        let t = try HTTP2DownstreamConnectionTests(rules: [RouteRule(fault: fault)])
        let channel = t.connection.channel
        try t.send(authority: "payments", path: "/x", grpc: false, on: 1)
        _ = try t.connection.frames()
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        let announced = try t.connection.frames()
        guard announced.count == 2, case .ping(let ping, ack: false) = announced[1].payload else {
            Issue.record("expected GOAWAY and PING, got \(announced)")
            return
        }
        #expect(announced[0].goAwayLastStream == .maxID)
        try t.send(authority: "payments", path: "/y", grpc: false, on: 3)  // on its way before the GOAWAY
        try t.connection.send(.ping(ping, ack: true), on: .rootStream)
        #expect(try t.connection.frames().compactMap(\.goAwayLastStream) == [3])
        t.connection.closed(1)
        t.harness.loop.run()
        #expect(channel.isActive, "stream 3 is in flight")
        t.harness.loop.advanceTime(by: .milliseconds(500))  // the fault delay ends; the streams' answers go out
        t.connection.closed(3)
        t.harness.loop.run()
        #expect(!channel.isActive)
    }

    @Test func aDrainThatOutlastsItsTimeoutClosesTheConnection() throws {
        let harness = try ExchangeHarness(rules: [RouteRule(fault: FaultInjection(delay: .init(percent: 100, duration: .seconds(60))))])
        let connection = try HTTP2DownstreamChannel(harness: harness, drainTimeout: .seconds(5))
        try connection.send(head: [(":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/x")])
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        harness.loop.advanceTime(by: .seconds(4))
        #expect(connection.channel.isActive, "the caller never acked the PING, the stream is in flight")
        harness.loop.advanceTime(by: .seconds(1))
        #expect(!connection.channel.isActive)
    }

    @Test func aConnectionWithNoStreamForTheIdleTimeoutIsDrained() throws {
        let harness = try ExchangeHarness(rules: [RouteRule()])
        let connection = try HTTP2DownstreamChannel(harness: harness, idleTimeout: .seconds(10))
        harness.loop.advanceTime(by: .seconds(6))
        try connection.send(head: [(":method", "GET"), (":scheme", "http"), (":authority", "nosuch"), (":path", "/x")])
        harness.loop.advanceTime(by: .seconds(6))
        connection.closed(1)  // idle from 12 s
        harness.loop.advanceTime(by: .seconds(9))
        #expect(try connection.frames().compactMap(\.goAwayLastStream).isEmpty, "a stream was open until 12 s")
        harness.loop.advanceTime(by: .seconds(1))
        #expect(try connection.frames().compactMap(\.goAwayLastStream) == [.maxID])
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

    /// The usual hop (no path or authority change): the received block copied, the removed and
    /// replaced fields taken out in every spelling, the added ones after the rest.
    @Test func aRequestWithOnlyFieldsTakenOutAndAddedKeepsTheReceivedBlocksOrder() throws {
        var received = HPACKHeaders([(":method", "GET"), (":scheme", "https"), (":authority", "payments"), (":path", "/pay")])
        received.add(name: "x-mesh-caller", value: "forged")
        received.add(name: "accept", value: "*/*")
        received.add(name: "x_mesh_caller", value: "forged")
        received.add(name: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", indexing: .nonIndexable)
        received.add(name: "x-request-id", value: "ab12", indexing: .nonIndexable)
        let out = HTTP2Headers.request(
            received, removing: ["x-mesh-caller"],
            adding: [
                HTTPHeaderLine(generatedName: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"),
                HTTPHeaderLine(generatedName: "X-Mesh-Caller", value: "web"),
            ],
            path: nil)
        #expect(out.map(\.name) == [":method", ":scheme", ":authority", ":path", "accept", "x-request-id", "traceparent", "x-mesh-caller"])
        #expect(out[canonicalForm: "traceparent"] == ["00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"])
        #expect(out.first(name: "x-mesh-caller") == "web")
        #expect(out.filter { HTTP2Headers.perRequest($0.name) }.allSatisfy { $0.indexable == .nonIndexable })
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

    /// The first stream of a connection (and every 1024th) puts the per-request names into the
    /// next hop's table once; the streams between send them as an index and a literal value, a
    /// few bytes shorter each and without Huffman-coding the name, still adding no entry.
    @Test func perRequestNamesAreIndexedOnceSoLaterRequestsNameThemByIndex() throws {
        #expect((1...4097).filter { $0 % 2 == 1 && HTTP2Headers.indexesNames(onStream: HTTP2StreamID($0)) } == [1, 2049, 4097])
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var sizes: [(wire: Int, table: Int)] = []
        for n in 0..<3 {
            let received = HPACKHeaders([
                (":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/pay"), ("x-request-id", "request-\(n)"),
            ])
            let trace = HTTPHeaderLine(generatedName: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e473\(n)-00f067aa0ba902b7-01")
            var out = HTTP2Headers.request(received, removing: [], adding: [trace], path: nil)
            if HTTP2Headers.indexesNames(onStream: HTTP2StreamID(2 * n + 1)) { out = HTTP2Headers.indexingPerRequestFields(out) }
            #expect(Array(out.map(\.name)) == [":method", ":scheme", ":authority", ":path", "x-request-id", "traceparent"])
            var wire = ByteBuffer()
            try encoder.encode(headers: out, to: &wire)
            sizes.append((wire.readableBytes, encoder.dynamicTableSize))
        }
        #expect(sizes[1].table == sizes[0].table && sizes[2].table == sizes[0].table, "only the first request adds entries")
        #expect(sizes[2].wire == sizes[1].wire)
        // The same two requests with the names never indexed: the second is longer by the names.
        var unindexed = HPACKEncoder(allocator: ByteBufferAllocator())
        var wire = ByteBuffer()
        for n in 0..<2 {
            let plain = HTTP2Headers.request(
                HPACKHeaders([(":method", "GET"), (":scheme", "http"), (":authority", "payments"), (":path", "/pay"), ("x-request-id", "request-\(n)")]),
                removing: [], adding: [HTTPHeaderLine(generatedName: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e473\(n)-00f067aa0ba902b7-01")],
                path: nil)
            wire.clear()
            try unindexed.encode(headers: plain, to: &wire)
        }
        #expect(sizes[1].wire + 10 < wire.readableBytes, "the names went as indexes (\(sizes[1].wire) vs \(wire.readableBytes) bytes)")
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
