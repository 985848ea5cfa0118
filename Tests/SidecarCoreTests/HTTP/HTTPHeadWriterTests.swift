import NIOCore
import Testing

@testable import SidecarCore

@Suite struct HTTPHeadWriterTests {
    static let request =
        "POST /pay HTTP/1.1\r\nHost: payments\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        + "accept:  */* \r\nX-Mesh-Caller: forged\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n"
        + "TE: trailers\r\nTrailer: Checksum\r\nProxy-Authorization: Basic eA==\r\nX-Request-Id: from-client\r\n\r\n"

    func parse(_ bytes: ByteBuffer) throws -> HTTPRawRequestHead {
        var buffer = bytes
        var parser = HTTPHeadParser()
        let head = try #require(try parser.parseRequest(&buffer))
        #expect(buffer.readableBytes == 0)
        return head
    }

    @Test func rewrittenHeadReparsesWithTheModifications() throws {
        let head = try parse(ByteBuffer(string: Self.request))
        let writer = HTTPHeadWriter(removing: ["x-request-id"])
        var out = ByteBuffer()
        writer.write(
            head,
            adding: [
                try HTTPHeaderLine(name: "x-mesh-caller", value: "web"),
                try HTTPHeaderLine(name: "x-request-id", value: "4bf92f35"),
                try HTTPHeaderLine(name: "traceparent", value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ],
            into: &out)

        let again = try parse(out)
        #expect(again.method == head.method)
        #expect(again.target == head.target)
        #expect(again.version == head.version)
        #expect(again.framing == head.framing)
        #expect(again.headers.decoded.map { "\($0.name): \($0.value)" } == [
            "Host: payments",
            "accept: */*",
            "Transfer-Encoding: chunked",
            "Trailer: Checksum",
            "x-mesh-caller: web",
            "x-request-id: 4bf92f35",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ])
        // Kept lines are the original bytes, spacing and case included.
        #expect(String(buffer: out).hasPrefix("POST /pay HTTP/1.1\r\nHost: payments\r\naccept:  */* \r\nTransfer-Encoding: chunked\r\n"))
    }

    @Test func unchangedHeadIsWrittenByteForByte() throws {
        let text = "GET / HTTP/1.1\r\nHost: h\r\nX-A:1\r\n\r\n"
        let head = try parse(ByteBuffer(string: text))
        var out = ByteBuffer()
        HTTPHeadWriter().write(head, into: &out)
        #expect(String(buffer: out) == text)
    }

    @Test func upgradeIsRelayedWhenAsked() throws {
        let head = try parse(ByteBuffer(string: "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
        var relayed = ByteBuffer()
        HTTPHeadWriter(relayUpgrade: true).write(head, into: &relayed)
        #expect(String(buffer: relayed) == "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n")
        #expect(try parse(relayed).framing.upgrade)
        var stripped = ByteBuffer()
        HTTPHeadWriter().write(head, into: &stripped)
        #expect(String(buffer: stripped) == "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n")
    }

    @Test func responseHeadsAreRewrittenToo() throws {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nServer: app\r\n\r\nok")
        let head = try #require(try parser.parseResponse(&buffer, requestMethod: .GET))
        var out = ByteBuffer()
        HTTPHeadWriter().write(head, adding: [try HTTPHeaderLine(name: "connection", value: "close")], into: &out)
        #expect(String(buffer: out) == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: app\r\nconnection: close\r\n\r\n")
    }

    @Test func framingFieldsCannotBeRemovedByName() throws {
        let head = try parse(ByteBuffer(string: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"))
        var out = ByteBuffer()
        HTTPHeadWriter(removing: ["content-length"]).write(head, into: &out)
        #expect(try parse(out).framing.body == .contentLength(1))
    }

    @Test func injectedLinesCannotSplitTheHead() {
        #expect(throws: HTTPParserError.invalidHeaderValue(line: 0)) { try HTTPHeaderLine(name: "x-mesh-caller", value: "web\r\nX-Admin: 1") }
        #expect(throws: HTTPParserError.invalidHeaderValue(line: 0)) { try HTTPHeaderLine(name: "x-a", value: "a\u{0}") }
        #expect(throws: HTTPParserError.invalidHeaderName(line: 0)) { try HTTPHeaderLine(name: "x a", value: "1") }
        #expect(throws: HTTPParserError.invalidHeaderName(line: 0)) { try HTTPHeaderLine(name: "", value: "1") }
    }
}

/// Identity headers in any spelling an app framework reads as the same name are dropped when
/// the mesh sets its own (CGI/WSGI map `x_mesh_caller` and `X-Mesh-Caller` to one variable).
@Suite struct HTTPHeadWriterSpellingTests {
    @Test func everySpellingOfASetHeaderIsDropped() throws {
        let request = "GET / HTTP/1.1\r\nHost: p\r\nx_mesh_caller: admin\r\nX-MESH-CALLER: admin\r\nX_Mesh-Caller: admin\r\n"
            + "x-mesh-callerx: keep\r\nx_mesh_user: root\r\n\r\n"
        var buffer = ByteBuffer(string: request)
        var parser = HTTPHeadParser()
        let head = try #require(try parser.parseRequest(&buffer))
        var out = ByteBuffer()
        HTTPHeadWriter(removing: ["x-mesh-user"]).write(
            head, adding: [try HTTPHeaderLine(name: "x-mesh-caller", value: "web")], into: &out)
        #expect(String(buffer: out) == "GET / HTTP/1.1\r\nHost: p\r\nx-mesh-callerx: keep\r\nx-mesh-caller: web\r\n\r\n")
    }
}
