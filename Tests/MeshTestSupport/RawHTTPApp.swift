import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SidecarCore

/// An app that records every request exactly as its bytes arrived (head, body, chunked
/// trailers) and answers `200 ok`, for tests that must see what the mesh really forwarded:
/// the path after normalization, which identity headers survived, what trailers came through.
public final class RawHTTPApp: Sendable {
    public let port: Int
    private let channel: Channel
    private let recorded = NIOLockedValueBox<[String]>([])

    public init(group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        let recorded = self.recorded
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawRecorder(recorded: recorded))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    /// Every complete request received, as text, in order.
    public var requests: [String] { recorded.withLockedValue { $0 } }

    public func close() async throws { try await channel.close() }
}

private final class RawRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let recorded: NIOLockedValueBox<[String]>
    var buffer = ByteBuffer()
    var parser = HTTPHeadParser()
    var current: (text: String, framer: HTTPBodyFramer)?

    init(recorded: NIOLockedValueBox<[String]>) { self.recorded = recorded }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        do {
            while true {
                if current == nil {
                    guard let head = try parser.parseRequest(&buffer) else { return }
                    current = (String(buffer: head.headers.bytes), HTTPBodyFramer(framing: head.framing.body))
                }
                let (body, complete) = try current!.framer.readBody(from: &buffer)
                if let body { current!.text += String(buffer: body) }
                guard complete else { return }
                let text = current!.text
                current = nil
                recorded.withLockedValue { $0.append(text) }
                context.writeAndFlush(
                    wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")), promise: nil)
            }
        } catch {
            context.close(promise: nil)
        }
    }
}
