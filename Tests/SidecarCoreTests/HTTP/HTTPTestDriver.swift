import NIOCore

@testable import SidecarCore

/// One message as the framing layer saw it, decoded for comparison in tests.
struct FramedMessage: Equatable, CustomStringConvertible {
    var startLine: String
    var headers: [String]
    var framing: HTTPBodyFraming
    var keepAlive: Bool
    var body: [UInt8]

    var description: String { "\(startLine) \(headers) \(framing) body=\(body.count)B" }
}

/// Drives `HTTPHeadParser` + `HTTPBodyFramer` over a byte stream the way the proxy handler
/// does: one cumulation buffer, heads parsed in place, body relayed as slices.
/// `reads` gives the sizes the stream is cut into (cycled); nil means one read.
struct HTTPTestDriver {
    enum Role { case request, response(HTTPRequestMethod) }

    static func frame(_ text: String, role: Role = .request, reads: [Int]? = nil) throws(HTTPParserError) -> [FramedMessage] {
        try frame(Array(text.utf8), role: role, reads: reads)
    }

    static func frame(_ input: [UInt8], role: Role = .request, reads: [Int]? = nil) throws(HTTPParserError) -> [FramedMessage] {
        var parser = HTTPHeadParser()
        var buffer = ByteBuffer()
        var framer: HTTPBodyFramer?
        var current: FramedMessage?
        var messages: [FramedMessage] = []
        var offset = 0
        var readIndex = 0
        while offset < input.count {
            let size = reads.map { $0[readIndex % $0.count] } ?? input.count
            readIndex += 1
            let end = min(offset + max(size, 1), input.count)
            buffer.writeBytes(input[offset..<end])
            offset = end
            pump: while true {
                if framer == nil {
                    switch role {
                    case .request:
                        guard let head = try parser.parseRequest(&buffer) else { break pump }
                        current = FramedMessage(
                            startLine: "\(head.methodName) \(head.target) \(head.version.text)",
                            headers: head.headers.decoded.map { "\($0.name): \($0.value)" },
                            framing: head.framing.body, keepAlive: head.framing.keepAlive, body: [])
                        framer = HTTPBodyFramer(framing: head.framing.body)
                    case .response(let method):
                        guard let head = try parser.parseResponse(&buffer, requestMethod: method) else { break pump }
                        current = FramedMessage(
                            startLine: "\(head.version.text) \(head.status) \(head.reason)",
                            headers: head.headers.decoded.map { "\($0.name): \($0.value)" },
                            framing: head.framing.body, keepAlive: head.framing.keepAlive, body: [])
                        framer = HTTPBodyFramer(framing: head.framing.body)
                    }
                    if framer == nil { break pump }
                }
                let (body, done) = try framer!.readBody(from: &buffer)
                if let body { current!.body += body.readableBytesView }
                guard done else { break pump }
                messages.append(current!)
                framer = nil
                if buffer.readableBytes == 0 { break pump }
            }
            buffer.discardReadBytes()
        }
        if var framer {
            try framer.endOfInput()
            messages.append(current!)
        }
        return messages
    }
}
