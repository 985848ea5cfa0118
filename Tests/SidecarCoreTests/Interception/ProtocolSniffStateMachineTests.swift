import NIOCore
import Testing

@testable import SidecarCore

/// Telling HTTP/1.x, h2c and other bytes apart on an intercepted connection's first bytes.
@Suite struct ProtocolSniffStateMachineTests {
    typealias Sniffer = ProtocolSniffStateMachine

    func sniff(_ chunks: [String]) -> [Sniffer.Action] {
        var sniffer = Sniffer()
        var buffer = ByteBuffer()
        return chunks.map { chunk in
            buffer.writeString(chunk)
            return sniffer.bytesArrived(buffer)
        }
    }

    @Test func aRequestLineIsHTTP1AsSoonAsItsMethodAndSpaceArrive() {
        #expect(sniff(["GET / HTTP/1.1\r\n"]) == [.decided(.http1)])
        #expect(sniff(["DEL", "ETE", " /x"]) == [.needMore, .needMore, .decided(.http1)])
        for method in ["HEAD", "POST", "PUT", "OPTIONS", "PATCH", "TRACE", "CONNECT"] {
            #expect(sniff(["\(method) "]) == [.decided(.http1)], "\(method)")
        }
    }

    @Test func theHTTP2PrefaceIsH2c() {
        #expect(sniff(["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]) == [.decided(.http2PriorKnowledge)])
        #expect(sniff(["PRI", " * HTTP/2.0\r\n"]) == [.needMore, .decided(.http2PriorKnowledge)])
    }

    @Test func anythingElseIsTCPOnTheFirstByteThatRulesHTTPOut() {
        #expect(sniff(["\u{16}\u{03}\u{01}"]) == [.decided(.other)])  // a TLS ClientHello
        #expect(sniff(["hello"]) == [.decided(.other)])
        #expect(sniff(["GE", "X"]) == [.needMore, .decided(.other)])
        #expect(sniff(["GET"]) == [.needMore], "a method without its space could still be anything")
        #expect(sniff(["GETX"]) == [.decided(.other)])
        #expect(sniff(["get / HTTP/1.1"]) == [.decided(.other)], "methods are case-sensitive")
    }

    @Test func aSilentClientIsTCPWhenTheTimeoutPassesAndADecisionSticks() {
        var sniffer = Sniffer()
        #expect(sniffer.bytesArrived(ByteBuffer()) == .needMore)
        #expect(sniffer.timedOut() == .other)
        #expect(sniffer.bytesArrived(ByteBuffer(string: "GET / HTTP/1.1")) == .decided(.other))

        var decided = Sniffer()
        #expect(decided.bytesArrived(ByteBuffer(string: "POST ")) == .decided(.http1))
        #expect(decided.timedOut() == .http1)
    }
}
