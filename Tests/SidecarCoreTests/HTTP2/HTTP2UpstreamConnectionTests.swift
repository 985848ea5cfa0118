import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import SidecarCore

/// `HTTP2UpstreamConnection` on an `EmbeddedChannel` standing in for the frame-mode
/// `NIOHTTP2Handler` under it: frames in and out by stream id, the WINDOW_UPDATEs NIOHTTP2 does
/// not send in frame mode, and failures told to the right exchange.
@Suite struct HTTP2UpstreamConnectionTests {
    /// Records what its stream tells it.
    final class Owner: HTTP2UpstreamOwner {
        var events: [String] = []
        var failure: HTTP2StreamFailure?

        func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) {
            events.append("head \(headers.first(name: ":status") ?? "-")\(endStream ? " end" : "")")
        }
        func upstreamData(_ data: ByteBuffer, endStream: Bool) {
            events.append("data \(data.readableBytes)\(endStream ? " end" : "")")
        }
        func upstreamTrailers(_ trailers: HPACKHeaders) { events.append("trailers") }
        func upstreamFailed(_ failure: HTTP2StreamFailure) {
            self.failure = failure
            events.append("failed")
        }
        func upstreamWritabilityChanged(_ writable: Bool) { events.append("writable \(writable)") }
        func upstreamReadComplete() { events.append("read complete") }
    }

    let channel = EmbeddedChannel()
    let connection = HTTP2UpstreamConnection(key: .init(address: HostPort(host: "127.0.0.1", port: 1), service: nil), pool: nil)

    init() throws {
        try channel.pipeline.syncOperations.addHandler(connection)
    }

    func connect() throws {
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// The value of a future the embedded loop already completed.
    func value(_ future: EventLoopFuture<HTTP2UpstreamStream>) throws -> HTTP2UpstreamStream {
        var stream: HTTP2UpstreamStream?
        future.assumeIsolated().whenSuccess { stream = $0 }
        return try #require(stream)
    }

    func open(_ owner: Owner, endStream: Bool = true) throws -> HTTP2UpstreamStream {
        let stream = try value(connection.reserveStream(owner: owner, on: channel.eventLoop))
        stream.send(.headers(Self.request("/"), endStream: endStream))
        stream.flush()
        return stream
    }

    func written() throws -> [HTTP2Frame] {
        var frames: [HTTP2Frame] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.self) { frames.append(frame) }
        return frames
    }

    func receive(_ id: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload) throws {
        try channel.writeInbound(HTTP2Frame(streamID: id, payload: payload))
    }

    static func request(_ path: String) -> HPACKHeaders {
        HPACKHeaders([(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "a")])
    }

    static func head(_ status: String, endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: HPACKHeaders([(":status", status)]), endStream: endStream))
    }

    static func data(_ bytes: Int, endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(repeating: 0x61, count: bytes)), endStream: endStream))
    }

    @Test func streamsWaitForTheConnectionThenGoOutInOrderAndResponsesFindTheirExchange() throws {
        let (a, b) = (Owner(), Owner())
        let first = connection.reserveStream(owner: a, on: channel.eventLoop)
        let second = connection.reserveStream(owner: b, on: channel.eventLoop)
        try connect()
        let windows = try written()
        guard case .windowUpdate(let increment) = windows.first?.payload, windows.first?.streamID == .rootStream else {
            Issue.record("expected the connection's WINDOW_UPDATE first, got \(windows)")
            return
        }
        #expect(increment == HTTP2Settings.connectionWindow - 65_535)
        // The second stream sends its head first: it takes the first id.
        let streamB = try value(second)
        streamB.send(.headers(Self.request("/b"), endStream: true))
        let streamA = try value(first)
        streamA.send(.headers(Self.request("/a"), endStream: true))
        streamA.flush()
        #expect(try written().map(\.streamID) == [1, 3])
        try receive(3, Self.head("200"))
        try receive(1, Self.head("404", endStream: true))
        try receive(3, Self.data(10, endStream: true))
        // Each `writeInbound` is a read batch of its own.
        #expect(a.events == ["head 200", "read complete", "data 10 end", "read complete"])
        #expect(b.events == ["head 404 end", "read complete"])
        #expect(connection.machine.isIdle)
    }

    @Test func theStreamWindowIsGivenBackWhileTheCallerTakesMoreAndHeldWhileItDoesNot() throws {
        try connect()
        _ = try written()
        let owner = Owner()
        let stream = try open(owner)
        _ = try written()
        let half = HTTP2Settings.streamWindow / 2
        func windowEvent(_ id: HTTP2StreamID, _ inbound: Int) {
            channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(streamID: id, inboundWindowSize: inbound, outboundWindowSize: 65_535))
        }
        try receive(1, Self.head("200"))
        stream.setReadsPaused(true)
        windowEvent(1, half - 1)
        channel.pipeline.fireChannelReadComplete()
        #expect(try written().isEmpty, "paused: no WINDOW_UPDATE, the sender runs out")
        stream.setReadsPaused(false)
        let resumed = try written()
        guard case .windowUpdate(let increment) = resumed.first?.payload, resumed.count == 1 else {
            Issue.record("expected one WINDOW_UPDATE on resume, got \(resumed)")
            return
        }
        #expect(resumed[0].streamID == 1 && increment == HTTP2Settings.streamWindow - half + 1)
        windowEvent(.rootStream, HTTP2Settings.connectionWindow / 2)
        channel.pipeline.fireChannelReadComplete()
        let connectionUpdate = try written()
        guard case .windowUpdate(let topUp) = connectionUpdate.first?.payload else {
            Issue.record("expected the connection's WINDOW_UPDATE, got \(connectionUpdate)")
            return
        }
        #expect(connectionUpdate[0].streamID == .rootStream && topUp == HTTP2Settings.connectionWindow / 2)
    }

    @Test func refusedAndGoneAwayStreamsFailSafeToRetryResetsDoNot() throws {
        try connect()
        let (a, b, c) = (Owner(), Owner(), Owner())
        _ = try open(a)
        _ = try open(b)
        _ = try open(c)
        try receive(1, .rstStream(.refusedStream))
        try receive(.rootStream, .goAway(lastStreamID: 3, errorCode: .noError, opaqueData: nil))
        guard case .refused = a.failure, case .refused = c.failure else {
            Issue.record("REFUSED_STREAM and past GOAWAY's last id are refused: \(String(describing: a.failure)), \(String(describing: c.failure))")
            return
        }
        #expect(b.failure == nil, "stream 3 may finish after GOAWAY")
        #expect(channel.isActive)
        try receive(3, .rstStream(.internalError))
        guard case .reset = b.failure else {
            Issue.record("a reset mid-exchange is a reset, got \(String(describing: b.failure))")
            return
        }
        #expect(!channel.isActive, "gone away and idle: closed")
    }

    @Test func headerBlocksAndBodyLengthsAreCheckedHereNotByNIOHTTP2() {
        for configuration in [HTTP2Settings.client, HTTP2Settings.server] {
            #expect(configuration.headerBlockValidation == .disabled, "HTTP2HeaderValidation checks each block once")
            #expect(configuration.contentLengthValidation == .disabled, "the state machines count each body")
        }
    }

    @Test func aMalformedResponseIsResetWithProtocolErrorAndFailsItsStream() throws {
        try connect()
        let (a, b) = (Owner(), Owner())
        _ = try open(a)
        _ = try open(b)
        _ = try written()
        try receive(1, .headers(.init(headers: HPACKHeaders([(":status", "200"), ("connection", "keep-alive")]))))
        try receive(3, Self.head("200"))
        try receive(3, .headers(.init(headers: HPACKHeaders([("grpc-status", "0"), ("X-Upper", "1")]), endStream: true)))
        let resets = try written().filter(\.isReset)
        #expect(resets.map(\.streamID) == [1, 3])
        #expect(resets.allSatisfy { if case .rstStream(.protocolError) = $0.payload { true } else { false } })
        #expect(a.events == ["failed"])
        #expect(b.events == ["head 200", "read complete", "failed"])
        guard case .reset = a.failure, case .reset = b.failure else {
            Issue.record("expected resets, got \(String(describing: a.failure)) \(String(describing: b.failure))")
            return
        }
        #expect(connection.machine.isIdle)
    }

    @Test func aResponseBodyLongerThanItsContentLengthIsResetWithProtocolError() throws {
        try connect()
        let owner = Owner()
        _ = try open(owner)
        _ = try written()
        try receive(1, .headers(.init(headers: HPACKHeaders([(":status", "200"), ("content-length", "3")]))))
        try receive(1, Self.data(4, endStream: true))
        guard case .rstStream(.protocolError) = try written().first?.payload, case .reset = owner.failure else {
            Issue.record("expected RST_STREAM(PROTOCOL_ERROR) and a failure, got \(owner.events)")
            return
        }
        #expect(owner.events == ["head 200", "read complete", "failed"])
        #expect(connection.machine.isIdle)
    }

    /// A connection that is up hands out streams at once (`HTTP2ConnectionPool.openStreamNow`: no
    /// future per request), counted against its limit like the others.
    @Test func aStreamIsHandedOutAtOnceOnlyByAConnectionThatIsUpWithRoom() throws {
        #expect(!connection.isReadyWithRoom, "connecting: streams wait for the preface")
        try connect()
        _ = try written()
        #expect(connection.isReadyWithRoom)
        let owners = (0..<HTTP2ConnectionPool.maxStreamsPerConnection).map { _ in Owner() }
        let streams = owners.map { connection.reserveStreamNow(owner: $0) }
        #expect(!connection.isReadyWithRoom, "the limit counts them")
        streams[0].send(.headers(Self.request("/"), endStream: true))
        streams[0].flush()
        #expect(try written().map(\.streamID) == [1])
        streams[1].cancel()
        #expect(connection.isReadyWithRoom)
    }

    @Test func aRequestBlockTheSidecarMadeWronglyIsNotSent() throws {
        try connect()
        _ = try written()
        let owner = Owner()
        let stream = try value(connection.reserveStream(owner: owner, on: channel.eventLoop))
        stream.send(.headers(HPACKHeaders([(":method", "GET"), (":path", "/")]), endStream: true))
        stream.flush()
        #expect(try written().isEmpty, "no :scheme: not sent")
        channel.embeddedEventLoop.run()
        guard case .reset = owner.failure else {
            Issue.record("expected the stream to fail, got \(String(describing: owner.failure))")
            return
        }
        #expect(connection.machine.isIdle)
    }

    @Test func anEarlyAnswerResetsOurHalfAndACancelResetsTheStream() throws {
        try connect()
        _ = try written()
        let (a, b) = (Owner(), Owner())
        _ = try open(a, endStream: false)
        let streamB = try open(b)
        _ = try written()
        try receive(1, Self.head("413", endStream: true))
        let reset = try written()
        guard case .rstStream(.cancel) = reset.first?.payload, reset.first?.streamID == 1 else {
            Issue.record("expected RST_STREAM(CANCEL) on stream 1, got \(reset)")
            return
        }
        streamB.cancel()
        let cancelled = try written()
        guard case .rstStream(.cancel) = cancelled.first?.payload, cancelled.first?.streamID == 3 else {
            Issue.record("expected RST_STREAM(CANCEL) on stream 3, got \(cancelled)")
            return
        }
        try receive(3, Self.head("200"))
        #expect(b.events.isEmpty, "a cancelled stream's frames go nowhere")
        #expect(connection.machine.isIdle)
    }

    @Test func aFrameNIOHTTP2WouldNotSendEndsItsStreamNotTheConnection() throws {
        try connect()
        _ = try written()
        let owner = Owner()
        _ = try open(owner, endStream: false)
        _ = try written()
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamError(streamID: 1, baseError: NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel)))
        guard case .reset = owner.failure else {
            Issue.record("expected a reset, got \(String(describing: owner.failure))")
            return
        }
        let reset = try written()
        guard case .rstStream(.cancel) = reset.first?.payload, reset.first?.streamID == 1 else {
            Issue.record("expected RST_STREAM(CANCEL) on stream 1, got \(reset)")
            return
        }
        #expect(connection.hasRoom && channel.isActive, "the connection takes new streams")
    }

    @Test func theConnectionClosingFailsItsStreams() throws {
        try connect()
        let owner = Owner()
        _ = try open(owner)
        try channel.close().wait()
        guard case .reset = owner.failure else {
            Issue.record("expected a reset, got \(String(describing: owner.failure))")
            return
        }
    }
}
