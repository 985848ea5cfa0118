import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import SidecarCore

/// Our framing against NIOHTTP1's llhttp-based `HTTPRequestDecoder` as an oracle: on valid
/// requests both must see the same messages; on the smuggling corpus we must refuse all of
/// them, and where llhttp is more lenient than we are, that difference is listed here.
@Suite struct HTTPDifferentialTests {
    struct Message: Equatable, CustomStringConvertible {
        var startLine: String
        var headers: [String]
        var keepAlive: Bool
        var body: [UInt8]
        var description: String { "\(startLine) \(headers) keepAlive=\(keepAlive) body=\(body.count)B" }
    }

    static let valid: [String] = [
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /pay?x=1&y=%20 HTTP/1.1\r\nHost: payments:8080\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n",
        "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://payments/pay HTTP/1.1\r\nHost: payments\r\n\r\n",
        "CONNECT payments:443 HTTP/1.1\r\nHost: payments:443\r\n\r\n",
        "DELETE /x HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Tab:\tv\tw\t\r\nX-Spaces:   a  b   \r\n\r\n",
        "PATCH /x HTTP/1.1\r\nHost: h\r\nX-Obs: caf\u{E9}\r\nContent-Length: 0\r\n\r\n",
        "\r\nGET /after-crlf HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "HEAD /x HTTP/1.1\r\nhost: h\r\nACCEPT-ENCODING: gzip\r\n!#$%&'*+-.^_`|~: token-chars\r\n\r\n",
    ]

    /// Requests we refuse that llhttp (as configured by NIOHTTP1) accepts. Each is deliberate:
    /// we forward raw bytes, so we refuse what any hop might read differently or what the RFC
    /// lets a recipient refuse.
    static let acceptedOnlyByNIO: Set<String> = [
        "HTTP/1.1 without Host",  // RFC 9112 §3.2: a server MUST answer 400
        "two Host",  // RFC 9112 §3.2: a server MUST answer 400
        "TE in HTTP/1.0",  // RFC 9112 §6.1: framing is faulty; we refuse rather than guess
        "TE empty element",  // RFC lets list recipients skip empty elements; in TE we refuse them
        "chunk extension too long",  // we bound chunk extensions at 4 KiB (memory/CPU bound)
        "Connection names Content-Length",  // stripping it as hop-by-hop would re-frame the body
    ]

    static var invalid: [SmugglingCase] {
        HTTPSmugglingTests.corpus + [
            .init(name: "request-target non-ASCII", bytes: "GET /caf\u{E9} HTTP/1.1\r\nHost: h\r\n\r\n", error: .invalidRequestTarget),
            .init(name: "HTTP/1.1 without Host", bytes: "GET / HTTP/1.1\r\n\r\n", error: .missingHost),
            .init(name: "Connection names Content-Length", bytes: "POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\nx", error: .invalidConnectionHeader),
            .init(name: "unsupported version", bytes: "GET / HTTP/1.2\r\nHost: h\r\n\r\n", error: .unsupportedVersion),
            .init(name: "HTTP/2 preface", bytes: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", error: .unsupportedVersion),
        ]
    }

    /// Other deliberate difference: we drop trailing whitespace from field values (RFC 9110
    /// §5.5: OWS is not part of the value); llhttp keeps it, so the oracle's values are trimmed.
    /// A raw request named by its first request line and size in the test list, not by its
    /// bytes (which print over several lines).
    struct RawRequest: Sendable, CustomTestStringConvertible {
        let text: String
        var testDescription: String {
            let requestLines = text.split(separator: "\r\n").filter { $0.hasSuffix(" HTTP/1.1") || $0.hasSuffix(" HTTP/1.0") }
            let more = requestLines.count > 1 ? " + \(requestLines.count - 1) more" : ""
            return "\(requestLines.first ?? "?")\(more) (\(text.utf8.count) bytes)"
        }
    }

    @Test(arguments: valid.map(RawRequest.init))
    func validRequestsFrameTheSame(_ request: RawRequest) throws {
        let text = request.text
        let ours = try HTTPTestDriver.frame(text).map(Self.normalise)
        let theirs = try Self.nio(Array(text.utf8)).get()
        #expect(ours == theirs)
        #expect(!ours.isEmpty)
    }

    @Test func invalidRequestsAreRefusedAndDifferencesAreTheDocumentedOnes() {
        var nioAccepted: Set<String> = []
        for smuggle in Self.invalid {
            #expect(throws: smuggle.error, "\(smuggle.name)") { try HTTPTestDriver.frame(smuggle.bytes) }
            if case .success = Self.nio(Array(smuggle.bytes.utf8)) {
                nioAccepted.insert(smuggle.name)
            }
        }
        #expect(nioAccepted == Self.acceptedOnlyByNIO.intersection(Set(Self.invalid.map(\.name))))
    }

    /// What NIOHTTP1 makes of `bytes`, as complete messages (or the error it raised).
    static func nio(_ bytes: [UInt8]) -> Result<[Message], any Error> {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        var messages: [Message] = []
        var current: Message?
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head):
                    current = Message(
                        startLine: "\(head.method.rawValue) \(head.uri) HTTP/\(head.version.major).\(head.version.minor)",
                        headers: head.headers.map { "\($0.name): \(trimmingTrailingWhitespace($0.value))" },
                        keepAlive: head.isKeepAlive, body: [])
                case .body(let body):
                    current?.body += body.readableBytesView
                case .end:
                    if let current { messages.append(current) }
                    current = nil
                }
            }
        } catch {
            return .failure(error)
        }
        return .success(messages)
    }

    static func trimmingTrailingWhitespace(_ value: String) -> String {
        var value = Substring(value)
        while let last = value.last, last == " " || last == "\t" { value.removeLast() }
        return String(value)
    }

    /// Our message in the oracle's terms: chunked bodies decoded (we relay them raw).
    static func normalise(_ message: FramedMessage) -> Message {
        var body = message.body
        if message.framing == .chunked {
            body = decodeChunked(body)
        }
        return Message(startLine: message.startLine, headers: message.headers, keepAlive: message.keepAlive, body: body)
    }

    /// Decodes an already-validated chunked body (test helper; trusts its input).
    static func decodeChunked(_ raw: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < raw.count {
            var size = 0
            while let digit = HTTPGrammar.hexValue(raw[i]) {
                size = size * 16 + Int(digit)
                i += 1
            }
            while raw[i] != HTTPGrammar.lf { i += 1 }
            i += 1
            if size == 0 { break }
            out += raw[i..<(i + size)]
            i += size + 2
        }
        return out
    }
}
