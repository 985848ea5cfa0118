import NIOCore
import NIOHTTP2
import Testing

@testable import SidecarCore

/// The downstream connection's decisions, without a channel: the stream table and its limit,
/// the windows given back (only while an exchange takes more) and response writability.
@Suite struct HTTP2DownstreamConnectionStateMachineTests {
    final class Stream {}
    typealias Machine = HTTP2DownstreamConnectionStateMachine<Stream>

    static func machine() -> Machine {
        Machine(maxStreams: 2, streamWindow: 1000, connectionWindow: 100_000, highWatermark: 100, lowWatermark: 10)
    }

    @Test func aNewIdOpensAStreamAKnownOneIsItsTrailersOverTheLimitIsRefused() {
        var machine = Self.machine()
        #expect(machine.receivedFrame() == 100_000 - 65_535, "the connection window opens at the first frame")
        #expect(machine.receivedFrame() == nil, "once")
        let first = Stream()
        #expect(machine.receivedHeaders(1, endStream: false, check: { _ in .init() }, make: { first }) == .opened(first))
        #expect(machine.receivedHeaders(1, endStream: false, check: { _ in .init() }, make: { Stream() }) == .existing(first))
        let second = Stream()
        #expect(machine.receivedHeaders(3, endStream: false, check: { _ in .init() }, make: { second }) == .opened(second))
        #expect(machine.receivedHeaders(5, endStream: false, check: { _ in .init() }, make: { Stream() }) == .refused)
        #expect(machine.streamClosed(1, now: .uptimeNanoseconds(0)) === first)
        #expect(machine.stream(1) == nil)
        #expect(machine.receivedHeaders(5, endStream: false, check: { _ in .init() }, make: { Stream() }) != .refused, "a closed stream frees its slot")
        #expect(machine.connectionClosed().count == 2)
        #expect(machine.streams.isEmpty)
    }

    @Test func aMalformedHeadOpensNoStreamAndMalformedTrailersAreRefusedToo() {
        var machine = Self.machine()
        var checked: [HTTP2HeaderValidation.Block] = []
        #expect(machine.receivedHeaders(1, endStream: false, check: { checked.append($0); return nil }, make: { Stream() }) == .malformed)
        #expect(machine.stream(1) == nil, "no exchange for a malformed head")
        let open = Stream()
        #expect(machine.receivedHeaders(3, endStream: false, check: { checked.append($0); return .init() }, make: { open }) == .opened(open))
        #expect(machine.receivedHeaders(3, endStream: false, check: { checked.append($0); return nil }, make: { Stream() }) == .malformed)
        #expect(checked == [.request, .request, .trailers])
        #expect(machine.stream(3) === open, "it ends when NIOHTTP2 closes it for the reset")
    }

    @Test func aBodyThatDoesNotMatchItsContentLengthIsMalformed() {
        var machine = Self.machine()
        let length = { (n: Int) in { (_: HTTP2HeaderValidation.Block) in HTTP2HeaderValidation.Summary(contentLength: n) } }
        let stream = Stream()
        #expect(machine.receivedHeaders(1, endStream: false, check: length(5), make: { stream }) == .opened(stream))
        #expect(machine.receivedData(1, bytes: 3, endStream: false) == .deliver(stream))
        #expect(machine.receivedData(1, bytes: 2, endStream: true) == .deliver(stream), "exactly 5")
        _ = machine.streamClosed(1, now: .uptimeNanoseconds(0))
        _ = machine.receivedHeaders(3, endStream: false, check: length(5), make: { Stream() })
        #expect(machine.receivedData(3, bytes: 6, endStream: false) == .malformed, "longer")
        _ = machine.streamClosed(3, now: .uptimeNanoseconds(0))
        _ = machine.receivedHeaders(5, endStream: false, check: length(5), make: { Stream() })
        #expect(machine.receivedData(5, bytes: 4, endStream: true) == .malformed, "shorter")
        _ = machine.streamClosed(5, now: .uptimeNanoseconds(0))
        #expect(machine.receivedHeaders(7, endStream: true, check: length(5), make: { Stream() }) == .malformed, "no body at all")
        _ = machine.receivedHeaders(9, endStream: false, check: length(5), make: { Stream() })
        #expect(machine.receivedHeaders(9, endStream: true, check: { _ in .init() }, make: { Stream() }) == .malformed, "trailers before the body")
        #expect(machine.receivedData(11, bytes: 1, endStream: false) == nil, "not a stream of the table")
    }

    @Test func aStreamsWindowIsToppedUpAtHalfOnlyWhileItsExchangeTakesMore() {
        var machine = Self.machine()
        _ = machine.receivedHeaders(1, endStream: false, check: { _ in .init() }, make: { Stream() })
        #expect(machine.streamWindowChanged(1, inbound: 600, paused: false) == nil, "above half")
        #expect(machine.streamWindowChanged(1, inbound: 500, paused: false) == 500)
        #expect(machine.streamWindowChanged(1, inbound: 200, paused: true) == nil, "held while paused")
        #expect(machine.readsResumed(1) == 800, "given back on resume")
        #expect(machine.readsResumed(1) == nil)
        #expect(machine.streamWindowChanged(3, inbound: 0, paused: false) == nil, "not a stream of ours")
        #expect(machine.connectionWindowChanged(inbound: 60_000) == nil)
        #expect(machine.connectionWindowChanged(inbound: 50_000) == 50_000)
    }

    @Test func noWindowIsGivenBackOnceTheRequestEnded() {
        var machine = Self.machine()
        _ = machine.receivedHeaders(1, endStream: false, check: { _ in .init() }, make: { Stream() })
        #expect(machine.streamWindowChanged(1, inbound: 200, paused: true) == nil)
        _ = machine.receivedData(1, bytes: 0, endStream: true)
        #expect(machine.readsResumed(1) == nil, "NIOHTTP2 refuses a WINDOW_UPDATE on a stream the caller half-closed")
        #expect(machine.streamWindowChanged(1, inbound: 100, paused: false) == nil)
    }

    @Test func aResponseStreamStopsBeingWritableAtTheHighWatermarkUntilTheLowOne() {
        var machine = Self.machine()
        _ = machine.receivedHeaders(1, endStream: false, check: { _ in .init() }, make: { Stream() })
        #expect(machine.wroteData(1, bytes: 60) == nil)
        #expect(machine.wroteData(1, bytes: 60) == false, "120 unsent: stops")
        #expect(!machine.isWritable(1))
        #expect(machine.dataLeft(1, bytes: 60) == nil, "60 still unsent")
        #expect(machine.dataLeft(1, bytes: 55) == true, "5 unsent: writable again")
        #expect(machine.isWritable(1))
        #expect(machine.wroteData(7, bytes: 1) == nil && !machine.isWritable(7), "not a stream of ours")
    }

    @Test func drainAnnouncesThenNamesTheLastStreamAtThePingAckThenClosesOnceItsStreamsEnd() {
        var machine = Machine(maxStreams: 3, streamWindow: 1000, connectionWindow: 100_000)
        _ = machine.receivedHeaders(1, endStream: true, check: { _ in .init() }, make: { Stream() })
        _ = machine.receivedHeaders(5, endStream: true, check: { _ in .init() }, make: { Stream() })
        #expect(machine.beginDrain() == true, "GOAWAY (largest id) and PING go out")
        #expect(machine.beginDrain() == false, "once")
        #expect(machine.receivedPingAck(HTTP2PingData(withInteger: 7)) == nil, "not the drain's PING")
        _ = machine.receivedHeaders(7, endStream: true, check: { _ in .init() }, make: { Stream() })
        #expect(!machine.shouldClose, "streams open, the second GOAWAY not sent")
        #expect(machine.receivedPingAck(Machine.drainPing) == 7, "the last stream opened, one the caller sent before the GOAWAY included")
        #expect(machine.receivedPingAck(Machine.drainPing) == nil, "once")
        _ = machine.streamClosed(1, now: .uptimeNanoseconds(0))
        _ = machine.streamClosed(5, now: .uptimeNanoseconds(0))
        #expect(!machine.shouldClose, "stream 7 is in flight")
        _ = machine.streamClosed(7, now: .uptimeNanoseconds(0))
        #expect(machine.shouldClose)
    }

    @Test func aConnectionIdleForTheTimeoutDrainsOneWithStreamsIsLookedAtAgainLater() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var machine = Machine(maxStreams: 2, streamWindow: 1000, connectionWindow: 100_000, now: start)
        #expect(machine.idleCheck(now: start + .seconds(5), idleTimeout: .seconds(10)) == .checkAgain(at: start + .seconds(10)))
        _ = machine.receivedHeaders(1, endStream: true, check: { _ in .init() }, make: { Stream() })
        #expect(
            machine.idleCheck(now: start + .seconds(10), idleTimeout: .seconds(10)) == .checkAgain(at: start + .seconds(20)),
            "a stream is open: not idle")
        _ = machine.streamClosed(1, now: start + .seconds(12))
        #expect(machine.idleCheck(now: start + .seconds(20), idleTimeout: .seconds(10)) == .checkAgain(at: start + .seconds(22)))
        #expect(machine.idleCheck(now: start + .seconds(22), idleTimeout: .seconds(10)) == .drain)
        _ = machine.beginDrain()
        #expect(machine.idleCheck(now: start + .seconds(40), idleTimeout: .seconds(10)) == .stop)
    }
}
