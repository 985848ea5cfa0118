import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2

@testable import SidecarCore

/// An `HTTP2DownstreamConnection` on an `EmbeddedChannel` of a harness's loop, standing in for a
/// caller's connection after the frame-mode `NIOHTTP2Handler`: frames in and out by stream id.
struct HTTP2DownstreamChannel {
    let channel: EmbeddedChannel
    let connection: HTTP2DownstreamConnection

    init(
        _ side: HTTP2StreamExchange.Side = .outbound, harness: ExchangeHarness, maxStreams: Int = HTTP2Settings.maxDownstreamStreams,
        idleTimeout: TimeAmount = .hours(1), drainTimeout: TimeAmount = .seconds(30)
    ) throws {
        channel = EmbeddedChannel(loop: harness.loop)
        connection = HTTP2DownstreamConnection(
            side: side, loop: harness.context, accessLog: AccessLog(enabled: false, direction: "test"), eventLoop: harness.loop,
            maxStreams: maxStreams, idleTimeout: idleTimeout, drainTimeout: drainTimeout)
        try channel.pipeline.syncOperations.addHandler(connection)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    func send(_ payload: HTTP2Frame.FramePayload, on stream: HTTP2StreamID = 1) throws {
        try channel.writeInbound(HTTP2Frame(streamID: stream, payload: payload))
    }

    func send(head fields: [(String, String)], on stream: HTTP2StreamID = 1, endStream: Bool = true) throws {
        try send(.headers(.init(headers: HPACKHeaders(fields), endStream: endStream)), on: stream)
    }

    /// Every frame written so far, the connection's own included.
    func frames() throws -> [HTTP2Frame] {
        var frames: [HTTP2Frame] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.self) { frames.append(frame) }
        return frames
    }

    /// What was written on streams so far (the connection's WINDOW_UPDATEs left out).
    func written() throws -> [HTTP2Frame.FramePayload] {
        try frames().filter { $0.streamID != .rootStream }.map(\.payload)
    }

    /// NIOHTTP2's report after a DATA frame: `stream`'s receive window is now `inbound`.
    func windowNow(_ inbound: Int, on stream: HTTP2StreamID) {
        channel.pipeline.fireUserInboundEventTriggered(
            NIOHTTP2WindowUpdatedEvent(streamID: stream, inboundWindowSize: inbound, outboundWindowSize: 65_535))
    }

    /// NIOHTTP2 closed `stream` (both ends done, or reset).
    func closed(_ stream: HTTP2StreamID) {
        channel.pipeline.fireUserInboundEventTriggered(StreamClosedEvent(streamID: stream, reason: nil))
    }
}

extension HTTP2Frame {
    var isReset: Bool {
        if case .rstStream = payload { return true }
        return false
    }

    /// A GOAWAY's last stream id (nil: another frame).
    var goAwayLastStream: HTTP2StreamID? {
        if case .goAway(let last, .noError, nil) = payload { return last }
        return nil
    }
}
