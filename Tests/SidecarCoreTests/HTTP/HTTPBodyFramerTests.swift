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

/// The request side holds a chunked body's trailer section until it is whole, so identity
/// fields can be removed from it, however the bytes are split into reads.
@Suite struct HTTPTrailerHoldingTests {
    static let body = "5\r\nhello\r\n0\r\nX-Mesh-Caller: admin\r\nChecksum: abc\r\nx_mesh_user: root\r\n\r\n"

    /// Relays `input` read by read the way the proxy does; returns what went upstream.
    func relay(_ input: String, reads: Int) throws -> String {
        var framer = HTTPBodyFramer(framing: .chunked, holdsTrailers: true)
        let bytes = Array(input.utf8)
        var buffer = ByteBuffer()
        var out = ""
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + reads, bytes.count)
            buffer.writeBytes(bytes[offset..<end])
            offset = end
            let (body, progress) = try framer.readBodyProgress(from: &buffer)
            if var body {
                if progress.isComplete {
                    body = HTTPTrailerSection.removing(
                        ["x-mesh-caller", "x-mesh-user"], from: body, sectionBytes: progress.trailerSectionBytes,
                        allocator: ByteBufferAllocator())
                }
                out += String(buffer: body)
            }
            if progress.isComplete {
                #expect(framer.isComplete)
                return out + "|" + String(buffer: buffer) + String(decoding: bytes[offset...], as: UTF8.self)
            }
        }
        return out
    }

    @Test func identityTrailersAreRemovedAtEverySplit() throws {
        let input = Self.body + "GET /next"
        for reads in 1...input.utf8.count {
            #expect(try relay(input, reads: reads) == "5\r\nhello\r\n0\r\nChecksum: abc\r\n\r\n|GET /next", "reads of \(reads)")
        }
    }

    @Test func bodiesWithoutIdentityTrailersAreRelayedUnchanged() throws {
        for body in ["0\r\n\r\n", "3\r\nabc\r\n0\r\nChecksum: x\r\n\r\n", "2\r\nhi\r\n0;ext\r\n\r\n"] {
            for reads in [1, 2, 5, 100] {
                #expect(try relay(body, reads: reads) == body + "|", "\(body) in reads of \(reads)")
            }
        }
    }

    @Test func heldTrailerBytesAreNotReportedUntilTheSectionEnds() throws {
        var framer = HTTPBodyFramer(framing: .chunked, holdsTrailers: true)
        var buffer = ByteBuffer(string: "5\r\nhello\r\n0\r\nChecksum: a")
        var (body, progress) = try framer.readBodyProgress(from: &buffer)
        #expect(body.map { String(buffer: $0) } == "5\r\nhello\r\n0\r\n")
        #expect(!progress.isComplete)
        #expect(String(buffer: buffer) == "Checksum: a", "the held bytes stay in the caller's buffer")
        buffer.writeString("bc\r\n\r\n")
        (body, progress) = try framer.readBodyProgress(from: &buffer)
        #expect(body.map { String(buffer: $0) } == "Checksum: abc\r\n\r\n")
        #expect(progress.isComplete)
        #expect(progress.trailerSectionBytes == 17)
    }
}
