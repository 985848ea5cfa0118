import NIOCore
import Testing

@testable import SidecarCore

@Suite struct HTTPResponseFramingTests {
    @Test func responseToHEADHasNoBodyDespiteContentLength() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        let first = try HTTPTestDriver.frame(text, role: .response(.HEAD))
        #expect(first.first?.framing == HTTPBodyFraming.none)
        #expect(first.count == 2)  // the second head is read as the next response, not as a body
        #expect(first.first?.body == [])
    }

    @Test(arguments: [204, 304])
    func noContentAndNotModifiedHaveNoBody(status: Int) throws {
        let text = "HTTP/1.1 \(status) X\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        let messages = try HTTPTestDriver.frame(text, role: .response(.GET))
        #expect(messages.map(\.framing) == [.none, .contentLength(0)])
    }

    @Test func informationalThenFinalResponse() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        let cont = try #require(try parser.parseResponse(&buffer, requestMethod: .POST))
        #expect(cont.status == 100 && cont.isInformational && cont.framing.body == .none)
        let hints = try #require(try parser.parseResponse(&buffer, requestMethod: .POST))
        #expect(hints.status == 103 && hints.isInformational)
        let final = try #require(try parser.parseResponse(&buffer, requestMethod: .POST))
        #expect(final.status == 201 && !final.isInformational && final.reason == "Created")
        #expect(final.framing.body == .contentLength(2))
        #expect(String(buffer: buffer) == "ok")
    }

    @Test func switchingProtocolsAndConnectBecomeTunnels() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        let switched = try #require(try parser.parseResponse(&buffer, requestMethod: .GET))
        #expect(switched.framing.body == .tunnel)
        #expect(switched.framing.upgrade)
        #expect(!switched.isInformational)
        var connect = ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")
        #expect(try parser.parseResponse(&connect, requestMethod: .CONNECT)?.framing.body == .tunnel)
    }

    @Test func framingRulesInOrder() throws {
        func framing(_ head: String, _ method: HTTPRequestMethod = .GET) throws -> HTTPFraming? {
            var parser = HTTPHeadParser()
            var buffer = ByteBuffer(string: head + "\r\n")
            return try parser.parseResponse(&buffer, requestMethod: method)?.framing
        }
        #expect(try framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n")?.body == .chunked)
        #expect(try framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n") == HTTPFraming(body: .untilClose, keepAlive: false))
        #expect(try framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: whatever\r\n")?.body == .untilClose)
        #expect(try framing("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n")?.body == .untilClose)
        #expect(try framing("HTTP/1.1 200 OK\r\n") == HTTPFraming(body: .untilClose, keepAlive: false))
        #expect(try framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n") == HTTPFraming(body: .contentLength(7), keepAlive: true))
        #expect(try framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n")?.keepAlive == false)
        #expect(try framing("HTTP/1.0 200 OK\r\nContent-Length: 7\r\n")?.keepAlive == false)
        #expect(try framing("HTTP/1.0 200 OK\r\nContent-Length: 7\r\nConnection: Keep-Alive\r\n")?.keepAlive == true)
        #expect(try framing("HTTP/1.1 200\r\nContent-Length: 0\r\n")?.body == .contentLength(0))
        #expect(throws: HTTPParserError.conflictingFraming) {
            try framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n")
        }
        #expect(throws: HTTPParserError.duplicateContentLength) {
            try framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n")
        }
        #expect(throws: HTTPParserError.invalidStatusCode) { try framing("HTTP/1.1 2x0 OK\r\n") }
        #expect(throws: HTTPParserError.invalidStatusCode) { try framing("HTTP/1.1 099 OK\r\n") }
        #expect(throws: HTTPParserError.unsupportedVersion) { try framing("HTTP/2.0 200 OK\r\n") }
        #expect(throws: HTTPParserError.invalidStatusLine) { try framing("HTTP/1.1 200 O\u{1}K\r\n") }
    }

    @Test func untilCloseResponseBodyEndsAtEndOfInput() throws {
        let messages = try HTTPTestDriver.frame("HTTP/1.0 200 OK\r\n\r\nstream until close", role: .response(.GET), reads: [4])
        #expect(messages.count == 1)
        #expect(messages[0].body == Array("stream until close".utf8))
    }
}
