import NIOCore
import Testing

@testable import SidecarCore

@Suite struct HTTPBodyFramerTests {
    static let chunkedBody =
        "5;name=value;quoted=\"a b\"\r\nhello\r\n"
        + "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
        + "3;ext\r\n\r\n\r\r\n"
        + "0;last\r\nChecksum: abc\r\nX-Trailer:  two words \r\n\r\n"

    @Test func contentLengthBodySplitAcrossManyReads() throws {
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let input = Array("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n".utf8) + payload
            + Array("GET /next HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        let whole = try HTTPTestDriver.frame(input)
        #expect(whole.count == 2)
        #expect(whole[0].body == payload)
        #expect(whole[1].startLine == "GET /next HTTP/1.1")
        for reads in [[1], [3, 1, 7], [100], [999]] {
            #expect(try HTTPTestDriver.frame(input, reads: reads) == whole)
        }
    }

    @Test func contentLengthFramerReportsSlices() throws {
        var framer = HTTPBodyFramer(framing: .contentLength(5))
        var buffer = ByteBuffer(string: "hel")
        var (body, done) = try framer.readBody(from: &buffer)
        #expect(body.map { String(buffer: $0) } == "hel")
        #expect(!done)
        buffer.writeString("loGET")
        (body, done) = try framer.readBody(from: &buffer)
        #expect(body.map { String(buffer: $0) } == "lo")
        #expect(done)
        #expect(String(buffer: buffer) == "GET")
        #expect(framer.isComplete)
    }

    @Test func chunkedBodyWithExtensionsAndTrailersSplitAtEveryPosition() throws {
        let head = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        let next = "GET /after HTTP/1.1\r\nHost: h\r\n\r\n"
        let input = Array((head + Self.chunkedBody + next).utf8)
        let whole = try HTTPTestDriver.frame(input)
        #expect(whole.count == 2)
        #expect(whole[0].framing == .chunked)
        #expect(whole[0].body == Array(Self.chunkedBody.utf8), "chunked bytes are relayed unchanged")
        #expect(whole[1].startLine == "GET /after HTTP/1.1")
        for split in 1..<input.count {
            let parts = try HTTPTestDriver.frame(input, reads: [split, input.count])
            #expect(parts == whole, "split at \(split)")
        }
        #expect(try HTTPTestDriver.frame(input, reads: [1]) == whole)
    }

    @Test func chunkedFramerStopsExactlyAtTheEndOfTheMessage() throws {
        var framer = HTTPBodyFramer(framing: .chunked)
        let body = Array(Self.chunkedBody.utf8)
        for (i, byte) in body.enumerated() {
            let progress = try framer.consume(ByteBuffer(bytes: [byte]))
            #expect(progress.bodyBytes == 1)
            #expect(progress.isComplete == (i == body.count - 1))
        }
        #expect(try framer.consume(ByteBuffer(string: "GET")) == .init(bodyBytes: 0, isComplete: true))
    }

    @Test func truncatedBodiesAreErrorsButUntilCloseIsNot() throws {
        var chunked = HTTPBodyFramer(framing: .chunked)
        _ = try chunked.consume(ByteBuffer(string: "5\r\nhel"))
        #expect(throws: HTTPParserError.truncatedBody) { try chunked.endOfInput() }

        var length = HTTPBodyFramer(framing: .contentLength(10))
        _ = try length.consume(ByteBuffer(string: "abc"))
        #expect(throws: HTTPParserError.truncatedBody) { try length.endOfInput() }

        var close = HTTPBodyFramer(framing: .untilClose)
        #expect(try close.consume(ByteBuffer(string: "anything\r\n\r\n")) == .init(bodyBytes: 12, isComplete: false))
        try close.endOfInput()
        #expect(close.isComplete)
    }

    @Test func noBodyIsCompleteAtOnce() throws {
        var none = HTTPBodyFramer(framing: .none)
        #expect(try none.consume(ByteBuffer(string: "GET")) == .init(bodyBytes: 0, isComplete: true))
        let zero = HTTPBodyFramer(framing: .contentLength(0))
        #expect(zero.isComplete)
    }
}
