import NIOHPACK
import Testing

@testable import SidecarCore

/// RFC 9113 §8.2–8.3 as NIOHTTP2's `headerBlockValidation` applies them, now ours: every block
/// NIOHTTP2 refuses is refused here, and the blocks real clients send pass.
@Suite struct HTTP2HeaderValidationTests {
    static let request: [(String, String)] = [(":method", "GET"), (":scheme", "https"), (":authority", "payments"), (":path", "/pay?q=1")]

    static func valid(_ fields: [(String, String)], _ block: HTTP2HeaderValidation.Block = .request) -> Bool {
        HTTP2HeaderValidation.isValid(HPACKHeaders(fields), as: block)
    }

    @Test func wellFormedBlocksPass() {
        #expect(Self.valid(Self.request + [("accept", "*/*"), ("user-agent", "h2load nghttp2/1.52.0"), ("te", "trailers"), ("x", "")]))
        #expect(Self.valid([(":method", "POST"), (":scheme", "http"), (":path", "/a/B")]), ":authority may be left out")
        #expect(Self.valid([(":method", "CONNECT"), (":authority", "db:5432")]), "CONNECT: :method and :authority only")
        #expect(Self.valid([(":status", "200"), ("content-type", "text/plain; charset=utf-8"), ("x-bytes", "\u{7F}é\t ")], .response))
        #expect(Self.valid([("grpc-status", "0"), ("grpc-message", "")], .trailers))
        #expect(Self.valid([("te", "gzip")], .trailers), "te is a request field only")
    }

    @Test(arguments: [
        // names
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("X-Upper", "1")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("", "1")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("a b", "1")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("a:b", "1")],
        // connection-specific fields, and te other than trailers
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("connection", "close")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("keep-alive", "5")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("proxy-connection", "x")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("transfer-encoding", "chunked")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("upgrade", "h2c")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("te", "gzip")],
        // values
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x", "a\r\nx-mesh-caller: forged")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x", "a\nb")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x", "a\u{0}b")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/a b")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/a\tb")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/\u{7F}")],
        [(":method", "GET"), (":scheme", "http"), (":path", "")],
        // pseudo-headers: order, duplicates, unknown, the wrong kind, missing ones
        [(":method", "GET"), ("x", "1"), (":scheme", "http"), (":path", "/")],
        [(":method", "GET"), (":method", "GET"), (":scheme", "http"), (":path", "/")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":foo", "1")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":protocol", "websocket")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":status", "200")],
        [(":method", "GET"), (":METHOD", "GET"), (":scheme", "http"), (":path", "/")],
        [(":method", "GET"), (":scheme", "http")],
        [(":scheme", "http"), (":path", "/")],
        [(":method", "CONNECT"), (":authority", "db:5432"), (":path", "/")],
        [(":method", "CONNECT")],
    ])
    func malformedRequestsAreRefused(_ fields: [(String, String)]) {
        #expect(!Self.valid(fields), "\(fields)")
    }

    @Test func malformedResponsesAndTrailersAreRefused() {
        #expect(!Self.valid([("content-type", "text/plain")], .response), ":status is required")
        #expect(!Self.valid([(":status", "200"), (":status", "200")], .response))
        #expect(!Self.valid([(":status", "200"), (":path", "/")], .response))
        #expect(!Self.valid([(":status", "200"), ("Content-Type", "text/plain")], .response))
        #expect(!Self.valid([(":status", "200"), ("connection", "close")], .response))
        #expect(!Self.valid([(":status", "200"), ("x", "a\rb")], .response))
        #expect(!Self.valid([(":status", "200")], .trailers), "no pseudo-headers in trailers")
        #expect(!Self.valid([("grpc-status", "0"), ("transfer-encoding", "chunked")], .trailers))
    }

    @Test func contentLengthIsReadAsNIOHTTP2ReadIt() {
        func summary(_ fields: [(String, String)], _ block: HTTP2HeaderValidation.Block = .request) -> HTTP2HeaderValidation.Summary? {
            HTTP2HeaderValidation.check(HPACKHeaders(fields), as: block)
        }
        #expect(summary(Self.request)?.contentLength == nil)
        #expect(summary(Self.request + [("content-length", "10")])?.contentLength == 10)
        #expect(summary(Self.request + [("content-length", "10, 10")])?.contentLength == 10, "a list of equal values")
        #expect(summary(Self.request + [("content-length", "10"), ("content-length", "10")])?.contentLength == 10)
        #expect(summary(Self.request + [("content-length", "0")])?.contentLength == 0)
        for bad in ["", "-1", "+5", "1a", "10, 11", " ", "1,", "99999999999999999999"] {
            #expect(summary(Self.request + [("content-length", bad)]) == nil, "content-length: \(bad)")
        }
        #expect(summary(Self.request + [("content-length", "10"), ("content-length", "11")]) == nil)
        #expect(summary([(":method", "HEAD"), (":scheme", "http"), (":path", "/")])?.isHEAD == true)
        #expect(summary([(":status", "304"), ("content-length", "5")], .response) == .init(contentLength: 5, isNotModified: true))
    }

    @Test func nameBytesAreTheLowercaseTokenCharacters() {
        for byte in 0...255 {
            let byte = UInt8(byte)
            let expected = HTTPGrammar.isTokenByte(byte) && !(byte >= 0x41 && byte <= 0x5A)
            #expect(HTTP2HeaderValidation.isLowercaseTokenByte(byte) == expected, "byte \(byte)")
        }
    }

    /// A forwarded request is a checked block plus the hop's changes: the changes are checked by
    /// the block's rules (a `content-length` among them sends the block to the whole check).
    @Test func theHopsAdditionsToACheckedRequestAreCheckedByTheSameRules() {
        func line(_ name: String, _ value: String) -> HTTPHeaderLine { HTTPHeaderLine(generatedName: name, value: value) }
        #expect(HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("x-request-id", "ab12"), line("traceparent", "00-a-b-01")]))
        #expect(HTTP2HeaderValidation.areValidAdditions(path: "/a?b=1", added: [line("X-Mesh-Caller", "web"), line("host", "payments")]))
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: "", added: []), "an empty :path")
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: "/a b", added: []))
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("host", "pay ments")]), "as :authority")
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("connection", "close")]))
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("te", "gzip")]))
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("Transfer-Encoding", "chunked")]), "in any spelling")
        #expect(HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("te", "trailers")]))
        #expect(!HTTP2HeaderValidation.areValidAdditions(path: nil, added: [line("content-length", "5")]), "checked whole")
    }
}
