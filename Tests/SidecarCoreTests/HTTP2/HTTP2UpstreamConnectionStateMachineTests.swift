import NIOHTTP2
import Testing

@testable import SidecarCore

/// The upstream connection's decisions, without a channel: stream ids, the stream table,
/// window accounting and which failures are safe to retry.
@Suite struct HTTP2UpstreamConnectionStateMachineTests {
    final class Stream {}
    typealias Machine = HTTP2UpstreamConnectionStateMachine<Stream>

    static func machine() -> Machine {
        Machine(maxStreams: 3, streamWindow: 1000, connectionWindow: 100_000, highWatermark: 100, lowWatermark: 10)
    }

    /// Connects `machine` and starts `count` streams on it.
    static func start(_ count: Int, on machine: inout Machine) -> [(HTTP2StreamID, Stream)] {
        _ = machine.connected()
        return (0..<count).map { _ in
            let stream = Stream()
            machine.reserve()
            return (machine.start(stream)!, stream)
        }
    }

    @Test func streamsTakeOddIncreasingIdsAndCountAgainstTheLimit() {
        var machine = Self.machine()
        #expect(machine.connected() == 100_000 - 65_535, "the connection window opened past the protocol's 65,535")
        machine.reserve()
        machine.reserve()
        #expect(machine.hasRoom)
        machine.reserve()
        #expect(!machine.hasRoom, "reserved streams count before they start")
        #expect(machine.start(Stream()) == 1)
        #expect(machine.start(Stream()) == 3)
        machine.unreserve()
        #expect(machine.hasRoom)
        machine.peerMaxConcurrentStreams(2)
        #expect(!machine.hasRoom, "the peer's smaller limit holds")
    }

    @Test func theResponseEndsTheStreamAndAnEarlyAnswerResetsOurSide() {
        var machine = Self.machine()
        let streams = Self.start(2, on: &machine)
        let (first, second) = (streams[0].0, streams[1].0)
        machine.sentEndStream(first)
        #expect(machine.receivedHeaders(first, endStream: false, informational: true, check: { _ in .init() })?.1 == .informational)
        #expect(machine.receivedHeaders(first, endStream: false, informational: false, check: { _ in .init() })?.1 == .head(ended: false, resetAfter: false))
        #expect(machine.receivedData(first, bytes: 1, endStream: false)?.1 == .data(ended: false, resetAfter: false))
        #expect(machine.receivedHeaders(first, endStream: true, informational: false, check: { _ in .init() })?.1 == .trailers(resetAfter: false))
        #expect(machine.receivedData(first, bytes: 1, endStream: false) == nil, "gone from the table")
        // Answered before the request ended: the stream is done here, our half is reset.
        #expect(machine.receivedHeaders(second, endStream: true, informational: false, check: { _ in .init() })?.1 == .head(ended: true, resetAfter: true))
        #expect(machine.isIdle)
    }

    @Test func aMalformedHeadOrTrailersEndTheStream() {
        var machine = Self.machine()
        let streams = Self.start(2, on: &machine)
        let (first, second) = (streams[0].0, streams[1].0)
        var checked: [HTTP2HeaderValidation.Block] = []
        #expect(machine.receivedHeaders(first, endStream: false, informational: false, check: { checked.append($0); return nil })?.1 == .malformed)
        #expect(machine.receivedData(first, bytes: 1, endStream: true) == nil, "gone from the table")
        _ = machine.receivedHeaders(second, endStream: false, informational: false, check: { checked.append($0); return .init() })
        #expect(machine.receivedHeaders(second, endStream: true, informational: false, check: { checked.append($0); return nil })?.1 == .malformed)
        #expect(checked == [.response, .response, .trailers])
        #expect(machine.isIdle)
    }

    @Test func aResponseBodyThatDoesNotMatchItsContentLengthIsMalformed() {
        var machine = Self.machine()
        let ids = Self.start(4, on: &machine).map(\.0)
        for id in ids { machine.sentEndStream(id) }
        let length = { (n: Int, notModified: Bool) in
            { (_: HTTP2HeaderValidation.Block) in HTTP2HeaderValidation.Summary(contentLength: n, isNotModified: notModified) }
        }
        _ = machine.receivedHeaders(ids[0], endStream: false, informational: false, check: length(10, false))
        #expect(machine.receivedData(ids[0], bytes: 4, endStream: false)?.1 == .data(ended: false, resetAfter: false))
        #expect(machine.receivedData(ids[0], bytes: 4, endStream: true)?.1 == .malformed, "ends short")
        _ = machine.receivedHeaders(ids[1], endStream: false, informational: false, check: length(10, false))
        #expect(machine.receivedData(ids[1], bytes: 11, endStream: false)?.1 == .malformed, "longer")
        machine.sentHEAD(ids[2])
        #expect(machine.receivedHeaders(ids[2], endStream: true, informational: false, check: length(10, false))?.1 == .head(ended: true, resetAfter: false), "a HEAD's answer has no body")
        _ = machine.receivedHeaders(ids[3], endStream: false, informational: false, check: length(10, true))
        #expect(machine.receivedData(ids[3], bytes: 1, endStream: true)?.1 == .malformed, "a 304 has no body")
        #expect(machine.isIdle)
    }

    @Test func refusedAndGoAwayStreamsAreSafeToRetryOthersAreResets() {
        var machine = Self.machine()
        let streams = Self.start(3, on: &machine)
        let refused = machine.streamClosed(streams[0].0, code: .refusedStream)
        #expect(refused?.0 === streams[0].1 && refused?.1 == .refused)
        #expect(machine.streamClosed(streams[0].0, code: nil) == nil, "once only")
        let reset = machine.streamClosed(streams[1].0, code: .internalError)
        #expect(reset?.1 == .reset(.internalError))
        machine.reserve()
        let fourth = Stream()
        #expect(machine.start(fourth) == 7)
        let goneAway = machine.receivedGoAway(lastStreamID: 5)
        #expect(goneAway.count == 1 && goneAway[0] === fourth, "above the last stream id: never processed")
        #expect(machine.state == .goingAway && !machine.hasRoom)
        #expect(!machine.shouldClose, "stream 5 may finish")
        machine.reserve()
        #expect(machine.start(Stream()) == nil, "no new stream after GOAWAY")
        #expect(machine.cancel(streams[2].0) == true, "still open: RST_STREAM to send")
        #expect(machine.shouldClose)
    }

    @Test func theConnectionClosingFailsEveryStreamLeft() {
        var machine = Self.machine()
        let streams = Self.start(2, on: &machine)
        #expect(machine.connectionClosed().count == 2)
        #expect(machine.streamClosed(streams[0].0, code: nil) == nil)
        #expect(machine.connectionWindowChanged(inbound: 0) == nil)
    }

    @Test func aStreamsWindowIsGivenBackOnlyWhileItsExchangeTakesMore() {
        var machine = Self.machine()
        let id = Self.start(1, on: &machine)[0].0
        #expect(machine.streamWindowChanged(id, inbound: 600) == nil, "above half: not yet")
        #expect(machine.streamWindowChanged(id, inbound: 500) == 500, "back to the full window")
        #expect(machine.setReadsPaused(id, true) == nil)
        #expect(machine.streamWindowChanged(id, inbound: 100) == nil, "paused: the sender is left to run out")
        #expect(machine.streamWindowChanged(id, inbound: 0) == nil)
        #expect(machine.setReadsPaused(id, false) == 1000, "resumed: the whole window back")
        #expect(machine.setReadsPaused(id, false) == nil)
        #expect(machine.connectionWindowChanged(inbound: 60_000) == nil)
        #expect(machine.connectionWindowChanged(inbound: 40_000) == 60_000, "the connection's at half, on receipt")
    }

    @Test func aStreamStopsTakingBodyPastTheHighWatermarkUntilTheLow() {
        var machine = Self.machine()
        let id = Self.start(1, on: &machine)[0].0
        #expect(machine.wroteData(id, bytes: 60) == nil)
        #expect(machine.wroteData(id, bytes: 60) == false)
        #expect(!machine.isWritable(id))
        #expect(machine.dataLeft(id, bytes: 60) == nil, "60 still unsent")
        #expect(machine.dataLeft(id, bytes: 55) == true)
        #expect(machine.isWritable(id))
    }
}
