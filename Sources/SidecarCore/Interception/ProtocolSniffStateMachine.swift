import NIOCore

/// Tells what an intercepted connection speaks from its first bytes, without copying them:
/// HTTP/1.x (a request line's method and a space), the HTTP/2 prior-knowledge preface, or
/// anything else (carried as TCP). A client that sends nothing (a server-speaks-first protocol
/// such as SMTP or MySQL) is TCP once the detection timeout passes.
///
/// Pure: the handler feeds it the buffered bytes and the timer; it answers as soon as the bytes
/// can only be one thing, usually on the first read.
struct ProtocolSniffStateMachine {
    enum WireProtocol: Equatable {
        case http1
        /// `PRI * HTTP/2.0…`: h2c with prior knowledge. The outbound HTTP path tells it apart
        /// by the preface itself, so this only routes it there.
        case http2PriorKnowledge
        case other
    }

    enum Action: Equatable {
        case needMore
        case decided(WireProtocol)
    }

    /// What an HTTP/1.x request can start with: the registered methods and a space.
    static let http1Prefixes: [[UInt8]] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
        .map { Array(($0 + " ").utf8) }
    /// The start of the HTTP/2 connection preface (RFC 9113 §3.4); its request line is enough.
    static let http2Preface = Array("PRI * HTTP/2.0\r\n".utf8)

    private(set) var decided: WireProtocol?

    /// Looks at every byte read so far (the buffer's readable bytes; not consumed).
    mutating func bytesArrived(_ buffer: ByteBuffer) -> Action {
        if let decided { return .decided(decided) }
        let view = buffer.readableBytesView
        guard !view.isEmpty else { return .needMore }
        var possible = false
        for (candidate, result) in Self.candidates {
            switch Self.compare(view, with: candidate) {
            case .matches:
                return decide(result)
            case .prefix:
                possible = true
            case .differs:
                continue
            }
        }
        return possible ? .needMore : decide(.other)
    }

    /// Nothing conclusive came within the detection timeout.
    mutating func timedOut() -> WireProtocol {
        decided ?? decide(.other).wireProtocol!
    }

    // HTTP/2 hook: the preface is recognised here and routed with HTTP/1.x to the HTTP path
    // (`InterceptedConnectionHandler`), which tells the two apart by the preface on the
    // outbound port; nothing else here needs to change when that path speaks h2c.
    private static let candidates: [([UInt8], WireProtocol)] =
        http1Prefixes.map { ($0, .http1) } + [(http2Preface, .http2PriorKnowledge)]

    private mutating func decide(_ result: WireProtocol) -> Action {
        decided = result
        return .decided(result)
    }

    private enum Comparison { case matches, prefix, differs }

    private static func compare(_ view: ByteBufferView, with candidate: [UInt8]) -> Comparison {
        let count = min(view.count, candidate.count)
        var index = view.startIndex
        for byte in candidate.prefix(count) {
            if view[index] != byte { return .differs }
            index = view.index(after: index)
        }
        return count == candidate.count ? .matches : .prefix
    }
}

extension ProtocolSniffStateMachine.Action {
    var wireProtocol: ProtocolSniffStateMachine.WireProtocol? {
        if case .decided(let result) = self { return result }
        return nil
    }
}
