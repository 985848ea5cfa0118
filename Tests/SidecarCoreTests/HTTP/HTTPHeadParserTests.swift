import NIOCore
import Testing

@testable import SidecarCore

@Suite struct HTTPHeadParserTests {
    @Test func simpleGET() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "GET /pay?x=1 HTTP/1.1\r\nHost: payments\r\nAccept:  */* \r\n\r\n")
        let head = try #require(try parser.parseRequest(&buffer))
        #expect(head.method == .GET)
        #expect(head.methodName == "GET")
        #expect(head.target == "/pay?x=1")
        #expect(head.version == .http1_1)
        #expect(head.headers.count == 2)
        #expect(head.headers.name(at: 1) == "Accept")
        #expect(head.headers.value(at: 1) == "*/*")
        #expect(head.headers.nameEquals(at: 0, "HOST"))
        #expect(head.headers.firstValue(named: "host") == "payments")
        #expect(head.headers.firstIndex(of: .host) == 0)
        #expect(head.framing == HTTPFraming(body: .none, keepAlive: true))
        #expect(buffer.readableBytes == 0)
        #expect(head.byteCount == 56)
    }

    /// Long values are checked 8 bytes at a time: what they hold is read exactly (trailing
    /// whitespace off, obs-text kept), and a bad byte is found at every offset of a word.
    @Test func longValuesAreReadAndCheckedAtEveryOffset() throws {
        let id = "0af7651916cd43dd8448eb211c80319c"
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h\r\nX-Id: \(id) \t \r\nX-Text: caf\u{E9} \u{263A} ok\r\n\r\n")
        let head = try #require(try parser.parseRequest(&buffer))
        #expect(head.headers.value(at: 1) == id)
        #expect(head.headers.value(at: 2) == "caf\u{E9} \u{263A} ok")
        for offset in 0..<17 {
            for (bad, error) in [("\u{0}", HTTPParserError.invalidHeaderValue(line: 3)), ("\u{7F}", .invalidHeaderValue(line: 3)),
                                 ("\u{0B}", .invalidHeaderValue(line: 3)), ("\r", .bareCarriageReturn(line: 3))] {
                let value = String(id.prefix(offset)) + bad + String(id.dropFirst(offset))
                #expect(throws: error, "\(bad.unicodeScalars.first!.value) at \(offset)") {
                    try HTTPTestDriver.frame("GET / HTTP/1.1\r\nHost: h\r\nX-Id: \(value)\r\n\r\n")
                }
            }
        }
    }

    /// The fields the mesh reads on every request are found by their kind, in any spelling.
    @Test func theMeshsOwnFieldsAreKnownInAnySpelling() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHOST: h\r\nX-Request-ID: r1\r\nTraceParent: t\r\n"
            + "X-Mesh-Hops: 2\r\nIdempotency-Key: k\r\nx-request-idx: no\r\n\r\n")
        let head = try #require(try parser.parseRequest(&buffer))
        #expect(head.headers.firstValue(of: .host) == "h")
        #expect(head.headers.firstValue(of: .requestID) == "r1")
        #expect(head.headers.firstValue(of: .traceparent) == "t")
        #expect(head.headers.firstValue(of: .meshHops) == "2")
        #expect(head.headers.firstValue(of: .idempotencyKey) == "k")
        #expect(head.headers.firstIndex(of: .requestID) == 1, "x-request-idx is another field")
        #expect(!HTTPKnownHeader.requestID.isHopByHop && !HTTPKnownHeader.meshHops.isHopByHop)
    }

    @Test func headSplitAcrossReadsNeedsMoreBytesThenCompletes() throws {
        let text = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer()
        var head: HTTPRawRequestHead?
        for byte in text.utf8 {
            buffer.writeInteger(byte)
            if head == nil { head = try parser.parseRequest(&buffer) }
        }
        let parsed = try #require(head)
        #expect(parsed.framing.body == .contentLength(3))
        #expect(String(buffer: buffer) == "abc")
    }

    @Test func byteByByteEqualsOneRead() throws {
        let text = "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nX-A: 1\r\n\r\nhello world"
        let whole = try HTTPTestDriver.frame(text)
        #expect(whole.count == 1)
        #expect(whole[0].body == Array("hello world".utf8))
        for size in [1, 2, 3, 5, 7, 13] {
            #expect(try HTTPTestDriver.frame(text, reads: [size]) == whole)
        }
    }

    @Test func pipelinedRequestsInOneBuffer() throws {
        let text = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
            + "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
            + "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
            + "GET /4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        let messages = try HTTPTestDriver.frame(text)
        #expect(messages.map(\.startLine) == ["GET /1 HTTP/1.1", "POST /2 HTTP/1.1", "POST /3 HTTP/1.1", "GET /4 HTTP/1.1"])
        #expect(messages[1].body == Array("ok".utf8))
        #expect(messages[2].body == Array("1\r\nx\r\n0\r\n\r\n".utf8))
        #expect(messages.map(\.keepAlive) == [true, true, true, false])
        for size in [1, 4, 9] {
            #expect(try HTTPTestDriver.frame(text, reads: [size]) == messages)
        }
    }

    @Test func oneLeadingEmptyLineIsIgnoredTwoAreNot() throws {
        #expect(try HTTPTestDriver.frame("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").count == 1)
        #expect(try HTTPTestDriver.frame("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", reads: [1]).count == 1)
        #expect(throws: HTTPParserError.tooManyLeadingEmptyLines) {
            try HTTPTestDriver.frame("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        }
    }

    @Test func oversizeHeadIs431() throws {
        let big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + String(repeating: "a", count: 70_000) + "\r\n\r\n"
        #expect(throws: HTTPParserError.headTooLarge) { try HTTPTestDriver.frame(big) }
        #expect(throws: HTTPParserError.headTooLarge) { try HTTPTestDriver.frame(big, reads: [4096]) }
        #expect(HTTPParserError.headTooLarge.status == 431)

        // A head that never ends is refused as soon as it passes the limit, not buffered forever.
        var parser = HTTPHeadParser(limits: .init(maxHeadSize: 100))
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100))
        #expect(throws: HTTPParserError.headTooLarge) { try parser.parseRequest(&buffer) }

        var exact = HTTPHeadParser(limits: .init(maxHeadSize: 27))
        var fits = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(try exact.parseRequest(&fits) != nil)
    }

    @Test func tooManyHeadersIs431() throws {
        var text = "GET / HTTP/1.1\r\nHost: h\r\n"
        for i in 0..<100 { text += "X-\(i): v\r\n" }
        #expect(throws: HTTPParserError.tooManyHeaders) { try HTTPTestDriver.frame(text + "\r\n") }
        #expect(HTTPParserError.tooManyHeaders.status == 431)
    }

    @Test func versions() throws {
        let ok10 = try HTTPTestDriver.frame("GET / HTTP/1.0\r\n\r\n")
        #expect(ok10.first?.keepAlive == false)
        let ka10 = try HTTPTestDriver.frame("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(ka10.first?.keepAlive == true)
        #expect(throws: HTTPParserError.unsupportedVersion) { try HTTPTestDriver.frame("GET / HTTP/2.0\r\nHost: h\r\n\r\n") }
        #expect(throws: HTTPParserError.unsupportedVersion) { try HTTPTestDriver.frame("GET / HTTP/1.2\r\nHost: h\r\n\r\n") }
        #expect(HTTPParserError.unsupportedVersion.status == 505)
        for bad in ["GET / http/1.1", "GET / HTTP/1.1 ", "GET / HTTP/11", "GET /", "GET  / HTTP/1.1", "GET / HTTP/1.10"] {
            #expect(throws: HTTPParserError.self, "\(bad)") { try HTTPTestDriver.frame(bad + "\r\nHost: h\r\n\r\n") }
        }
    }

    @Test func requestLineAndHostRules() throws {
        #expect(throws: HTTPParserError.missingHost) { try HTTPTestDriver.frame("GET / HTTP/1.1\r\n\r\n") }
        #expect(throws: HTTPParserError.duplicateHost) { try HTTPTestDriver.frame("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") }
        #expect(throws: HTTPParserError.invalidMethod) { try HTTPTestDriver.frame("G(ET / HTTP/1.1\r\nHost: h\r\n\r\n") }
        #expect(throws: HTTPParserError.invalidRequestTarget) { try HTTPTestDriver.frame("GET /a\u{1}b HTTP/1.1\r\nHost: h\r\n\r\n") }
        #expect(throws: HTTPParserError.invalidRequestTarget) { try HTTPTestDriver.frame("GET /é HTTP/1.1\r\nHost: h\r\n\r\n") }
        #expect(try HTTPTestDriver.frame("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").count == 1)
        #expect(try HTTPTestDriver.frame("GET http://payments/pay HTTP/1.1\r\nHost: payments\r\n\r\n").count == 1)
    }

    @Test func connectionFacts() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(
            string: "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, X-Secret\r\nUpgrade: websocket\r\n"
                + "X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nTrailer: x\r\nProxy-Authorization: b\r\nExpect: 100-Continue\r\n"
                + "Proxy-Connection: keep-alive\r\nContent-Length: 0\r\n\r\n")
        let head = try #require(try parser.parseRequest(&buffer))
        #expect(head.framing.upgrade)
        #expect(head.framing.expectsContinue)
        #expect(head.framing.keepAlive)
        #expect(head.framing.body == .contentLength(0))
        let hopByHop = head.headers.fields.indices.filter { head.headers.fields[$0].isHopByHop }.map { head.headers.name(at: $0) }
        #expect(hopByHop == ["Connection", "Upgrade", "X-Secret", "Keep-Alive", "TE", "Proxy-Authorization", "Proxy-Connection"])
    }

    @Test func expectAndUpgradeIgnoredInHTTP10() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "GET / HTTP/1.0\r\nExpect: 100-continue\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
        let head = try #require(try parser.parseRequest(&buffer))
        #expect(!head.framing.expectsContinue)
        #expect(!head.framing.upgrade)
    }

    @Test func connectionMayNotNameFramingHeaders() {
        for name in ["Content-Length", "transfer-encoding", "host"] {
            #expect(throws: HTTPParserError.invalidConnectionHeader) {
                try HTTPTestDriver.frame("POST / HTTP/1.1\r\nHost: h\r\nConnection: \(name)\r\nContent-Length: 1\r\n\r\nx")
            }
        }
    }

    @Test func errorsMapToStatusesAndDetails() {
        #expect(HTTPParserError.conflictingFraming.status == 400)
        #expect(HTTPParserError.unknownTransferCoding.status == 501)
        #expect(HTTPParserError.bareLineFeed(line: 3).detail == "bare LF without CR on line 3")
    }
}

/// Header names are checked byte by byte against a bitmap of RFC 9110's `tchar`: every byte
/// value is a token byte exactly when the RFC says so.
@Suite struct HTTPTokenByteTests {
    @Test func everyByteValueIsClassifiedAsTheRFCSays() {
        let tchar = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))
        for byte in 0...255 {
            #expect(HTTPGrammar.isTokenByte(UInt8(byte)) == tchar.contains(UInt8(byte)), "byte \(byte)")
        }
    }
}
