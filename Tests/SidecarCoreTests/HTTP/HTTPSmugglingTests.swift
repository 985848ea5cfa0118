import NIOCore
import Testing

@testable import SidecarCore

/// Requests a byte-forwarding proxy must refuse, because some other parser on the path could
/// frame them differently. Each is checked in one read and byte by byte.
struct SmugglingCase: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: String
    let error: HTTPParserError
    var testDescription: String { name }
}

@Suite struct HTTPSmugglingTests {
    static let post = "POST /x HTTP/1.1\r\nHost: h\r\n"

    static let corpus: [SmugglingCase] = [
        .init(name: "CL+TE", bytes: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", error: .conflictingFraming),
        .init(name: "TE+CL", bytes: post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", error: .conflictingFraming),
        .init(name: "TE chunked, identity", bytes: post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", error: .chunkedNotFinal),
        .init(name: "TE chunked twice", bytes: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", error: .chunkedNotFinal),
        .init(name: "TE gzip only", bytes: post + "Transfer-Encoding: gzip\r\n\r\n", error: .chunkedNotFinal),
        .init(name: "TE xchunked", bytes: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", error: .unknownTransferCoding),
        .init(name: "TE chunked with parameter", bytes: post + "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", error: .invalidTransferEncoding),
        .init(name: "TE empty element", bytes: post + "Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", error: .invalidTransferEncoding),
        .init(name: "TE quoted", bytes: post + "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", error: .invalidTransferEncoding),
        .init(name: "TE obs-fold", bytes: post + "Transfer-Encoding: gzip\r\n ,chunked\r\n\r\n0\r\n\r\n", error: .obsoleteLineFolding(line: 4)),
        .init(name: "TE obs-fold tab", bytes: post + "X-Pad: 1\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", error: .obsoleteLineFolding(line: 4)),
        .init(name: "TE empty value", bytes: post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", error: .invalidTransferEncoding),
        .init(name: "TE leading-space header line", bytes: "POST /x HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: h\r\n\r\n", error: .obsoleteLineFolding(line: 2)),
        .init(name: "TE space before colon", bytes: post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", error: .whitespaceBeforeColon(line: 3)),
        .init(name: "TE in HTTP/1.0", bytes: "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", error: .transferEncodingInHTTP10),
        .init(name: "TE vertical tab", bytes: post + "Transfer-Encoding: \u{0B}chunked\r\n\r\n0\r\n\r\n", error: .invalidHeaderValue(line: 3)),
        .init(name: "CL list", bytes: post + "Content-Length: 1, 2\r\n\r\nab", error: .duplicateContentLength),
        .init(name: "CL identical list", bytes: post + "Content-Length: 2, 2\r\n\r\nab", error: .duplicateContentLength),
        .init(name: "CL plus sign", bytes: post + "Content-Length: +5\r\n\r\nhello", error: .invalidContentLength),
        .init(name: "CL negative", bytes: post + "Content-Length: -1\r\n\r\n", error: .invalidContentLength),
        .init(name: "CL hex", bytes: post + "Content-Length: 0x5\r\n\r\nhello", error: .invalidContentLength),
        .init(name: "CL inner space", bytes: post + "Content-Length: 1 2\r\n\r\n", error: .invalidContentLength),
        .init(name: "CL empty", bytes: post + "Content-Length:\r\n\r\n", error: .invalidContentLength),
        .init(name: "CL overflow", bytes: post + "Content-Length: 99999999999999999999\r\n\r\n", error: .invalidContentLength),
        .init(name: "CL differing duplicate", bytes: post + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", error: .duplicateContentLength),
        .init(name: "CL identical duplicate", bytes: post + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nab", error: .duplicateContentLength),
        .init(name: "CL space before colon", bytes: post + "Content-Length : 2\r\n\r\nab", error: .whitespaceBeforeColon(line: 3)),
        .init(name: "name with space", bytes: post + "X Y: 1\r\n\r\n", error: .whitespaceBeforeColon(line: 3)),
        .init(name: "name with slash", bytes: post + "X/Y: 1\r\n\r\n", error: .invalidHeaderName(line: 3)),
        .init(name: "empty name", bytes: post + ": 1\r\n\r\n", error: .invalidHeaderName(line: 3)),
        .init(name: "no colon", bytes: post + "Content-Length 2\r\n\r\n", error: .whitespaceBeforeColon(line: 3)),
        .init(name: "bare LF in header", bytes: "POST /x HTTP/1.1\r\nHost: h\nContent-Length: 0\r\n\r\n", error: .bareLineFeed(line: 2)),
        .init(name: "bare LF request line", bytes: "GET / HTTP/1.1\nHost: h\r\n\r\n", error: .bareLineFeed(line: 1)),
        .init(name: "bare LF end of head", bytes: "GET / HTTP/1.1\r\nHost: h\r\n\n", error: .bareLineFeed(line: 3)),
        .init(name: "bare CR in header", bytes: "POST /x HTTP/1.1\r\nHost: h\rContent-Length: 0\r\n\r\n", error: .bareCarriageReturn(line: 2)),
        .init(name: "bare CR in name", bytes: "POST /x HTTP/1.1\r\nHo\rst: h\r\n\r\n", error: .bareCarriageReturn(line: 2)),
        .init(name: "bare CR request line", bytes: "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", error: .bareCarriageReturn(line: 1)),
        .init(name: "NUL in value", bytes: post + "X-A: a\u{0}b\r\n\r\n", error: .invalidHeaderValue(line: 3)),
        .init(name: "DEL in value", bytes: post + "X-A: a\u{7F}b\r\n\r\n", error: .invalidHeaderValue(line: 3)),
        .init(name: "chunk size overflow", bytes: post + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n", error: .chunkSizeOverflow),
        .init(name: "chunk size invalid char", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n", error: .invalidChunkSize),
        .init(name: "chunk size with 0x", bytes: post + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", error: .invalidChunkSize),
        .init(name: "chunk size negative", bytes: post + "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", error: .invalidChunkSize),
        .init(name: "chunk size space", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", error: .invalidChunkSize),
        .init(name: "chunk size empty", bytes: post + "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", error: .invalidChunkSize),
        .init(name: "chunk size bare LF", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", error: .invalidChunkSize),
        .init(name: "missing CRLF after chunk data", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", error: .missingChunkDataTerminator),
        .init(name: "bare LF after chunk data", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", error: .missingChunkDataTerminator),
        .init(name: "chunk data longer than size", bytes: post + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", error: .missingChunkDataTerminator),
        .init(name: "chunk extension with control", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5;a=\u{1}\r\nhello\r\n0\r\n\r\n", error: .invalidChunkExtension),
        .init(name: "chunk extension too long", bytes: post + "Transfer-Encoding: chunked\r\n\r\n5;" + String(repeating: "a", count: 5000) + "\r\nhello\r\n0\r\n\r\n", error: .chunkExtensionTooLong),
        .init(name: "trailer obs-fold", bytes: post + "Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\n 2\r\n\r\n", error: .invalidTrailer),
        .init(name: "trailer bare LF", bytes: post + "Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\n\r\n", error: .invalidTrailer),
        .init(name: "trailer space before colon", bytes: post + "Transfer-Encoding: chunked\r\n\r\n0\r\nA : 1\r\n\r\n", error: .invalidTrailer),
        .init(name: "final chunk bare LF", bytes: post + "Transfer-Encoding: chunked\r\n\r\n0\r\n\n", error: .invalidTrailer),
        .init(name: "two Host", bytes: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", error: .duplicateHost),
    ]

    @Test(arguments: corpus)
    func rejectedInOneRead(_ smuggle: SmugglingCase) {
        #expect(throws: smuggle.error) { try HTTPTestDriver.frame(smuggle.bytes) }
    }

    @Test(arguments: corpus)
    func rejectedByteByByte(_ smuggle: SmugglingCase) {
        #expect(throws: smuggle.error) { try HTTPTestDriver.frame(smuggle.bytes, reads: [1]) }
    }

    @Test func rejectedHeadsMapToTheirStatus() {
        #expect(HTTPParserError.chunkedNotFinal.status == 400)
        #expect(HTTPParserError.unknownTransferCoding.status == 501)
    }

    @Test(arguments: [nil, [1], [7, 3]] as [[Int]?])
    func leadingZerosInChunkSizeAreNotOverflow(reads: [Int]?) throws {
        // The chunk is 5 bytes: the framed body ends exactly after the last chunk, and the
        // request behind it on the connection is framed on its own.
        let chunked = "0000000000000000000000005\r\nhello\r\n0\r\n\r\n"
        let next = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
        let messages = try HTTPTestDriver.frame(Self.post + "Transfer-Encoding: chunked\r\n\r\n" + chunked + next, reads: reads)
        #expect(messages.count == 2)
        #expect(messages.first?.framing == .chunked)
        #expect(messages.first.map { String(decoding: $0.body, as: UTF8.self) } == chunked, "chunked bytes relayed unchanged")
        #expect(messages.last?.startLine == "GET /next HTTP/1.1")
        #expect(messages.last?.body == [])
    }

    @Test func unboundedTrailersAreRefused() {
        var text = Self.post + "Transfer-Encoding: chunked\r\n\r\n0\r\n"
        for i in 0..<2000 { text += "T-\(i): vvvvvvvvvv\r\n" }
        #expect(throws: HTTPParserError.trailersTooLarge) { try HTTPTestDriver.frame(text + "\r\n") }
    }
}
