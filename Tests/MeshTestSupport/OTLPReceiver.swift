import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small OTLP/HTTP collector for tests: answers `POST /v1/traces` (OTLP JSON) with `status`
/// and keeps every span it accepted, flattened with its resource's `service.name`, so a test
/// can check ids and parent links across sidecars. Any other request gets 404.
public final class OTLPReceiver: Sendable {
    /// One received span: the fields tests look at, plus its attributes as strings.
    public struct Span: Sendable, CustomStringConvertible {
        public let service: String
        public let traceID: String
        public let spanID: String
        public let parentSpanID: String?
        public let name: String
        public let kind: Int
        public let start: UInt64
        public let end: UInt64
        public let attributes: [String: String]
        public let statusCode: Int

        public var description: String {
            "\(service) kind=\(kind) \(traceID)/\(spanID) parent=\(parentSpanID ?? "-") \(name) \(attributes)"
        }
    }

    public let port: Int
    private let channel: Channel
    private let state: NIOLockedValueBox<(spans: [Span], posts: Int, contentTypes: [String])>

    public init(status: Int = 200, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        let state = NIOLockedValueBox<(spans: [Span], posts: Int, contentTypes: [String])>(([], 0, []))
        self.state = state
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(OTLPRequestHandler(state: state, status: status))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    /// Every span accepted so far, in arrival order.
    public var spans: [Span] { state.withLockedValue { $0.spans } }
    /// Export requests received (accepted or not).
    public var posts: Int { state.withLockedValue { $0.posts } }
    public var contentTypes: [String] { state.withLockedValue { $0.contentTypes } }

    public func close() async throws { try await channel.close() }

    /// The spans of an `ExportTraceServiceRequest` in OTLP JSON; nil when it is not one.
    static func decode(_ body: Data) -> [Span]? {
        guard let root = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
              let resourceSpans = root["resourceSpans"] as? [[String: Any]]
        else { return nil }
        var out: [Span] = []
        for resourceSpan in resourceSpans {
            let resource = resourceSpan["resource"] as? [String: Any] ?? [:]
            let service = attributes(resource["attributes"])["service.name"] ?? ""
            for scope in resourceSpan["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    guard let trace = span["traceId"] as? String, let id = span["spanId"] as? String else { return nil }
                    out.append(Span(
                        service: service, traceID: trace, spanID: id, parentSpanID: span["parentSpanId"] as? String,
                        name: span["name"] as? String ?? "", kind: span["kind"] as? Int ?? 0,
                        start: UInt64(span["startTimeUnixNano"] as? String ?? "") ?? 0,
                        end: UInt64(span["endTimeUnixNano"] as? String ?? "") ?? 0,
                        attributes: attributes(span["attributes"]),
                        statusCode: (span["status"] as? [String: Any])?["code"] as? Int ?? 0))
                }
            }
        }
        return out
    }

    /// `[{"key":…,"value":{"stringValue"|"intValue":…}}]` as a dictionary of strings.
    private static func attributes(_ value: Any?) -> [String: String] {
        var out: [String: String] = [:]
        for attribute in value as? [[String: Any]] ?? [] {
            guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
            if let text = value["stringValue"] as? String { out[key] = text }
            if let number = value["intValue"] as? String { out[key] = number }
        }
        return out
    }
}

private final class OTLPRequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let state: NIOLockedValueBox<(spans: [OTLPReceiver.Span], posts: Int, contentTypes: [String])>
    let status: Int
    var head: HTTPRequestHead?
    var body = ByteBuffer()

    init(state: NIOLockedValueBox<(spans: [OTLPReceiver.Span], posts: Int, contentTypes: [String])>, status: Int) {
        self.state = state
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var bytes):
            body.writeBuffer(&bytes)
        case .end:
            guard let head else { return }
            var answer = 404
            if head.method == .POST, head.uri == "/v1/traces" {
                let spans = OTLPReceiver.decode(Data(body.readableBytesView))
                answer = spans == nil ? 400 : status
                state.withLockedValue {
                    $0.posts += 1
                    $0.contentTypes.append(head.headers["content-type"].first ?? "")
                    if answer == 200, let spans { $0.spans += spans }
                }
            }
            let reply = answer == 200 ? "{}" : "{\"code\":\(answer)}"
            var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", "\(reply.utf8.count)")])
            if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
            let keepAlive = head.isKeepAlive
            context.write(wrapOutboundOut(.head(HTTPResponseHead(
                version: head.version, status: HTTPResponseStatus(statusCode: answer), headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: reply)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
            self.head = nil
        }
    }
}
