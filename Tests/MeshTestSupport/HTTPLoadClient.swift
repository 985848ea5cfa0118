import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small concurrent HTTP/1.1 load client for tests that need more parallel requests than
/// curl offers (`--parallel-max` stops at 300) or client-side timestamps of every request:
/// `connections` keep-alive connections to 127.0.0.1:`port`, each sending `GET path` with
/// `Host: host` back to back, `requestsPerConnection` times or until `duration` has passed
/// (in that mode a connection the server closes is replaced until the time is up).
public enum HTTPLoadClient {
    /// One request's outcome as the client saw it.
    public struct Response: Sendable {
        public var status: Int
        /// The `x-mesh-error` header, if the sidecar made the response.
        public var meshError: String?
        /// When the request was written, and how long until its response ended.
        public var sent: ContinuousClock.Instant
        public var latency: Duration
    }

    public static func run(
        port: Int, host: String, path: String, connections: Int, requestsPerConnection: Int = 1,
        duration: Duration? = nil, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> [Response] {
        let deadline = duration.map { ContinuousClock.now + $0 }
        let results = NIOLockedValueBox<[Response]>([])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for _ in 0..<connections {
                tasks.addTask {
                    repeat {
                        let handler = LoadConnectionHandler(
                            host: host, path: path, limit: requestsPerConnection, deadline: deadline, results: results)
                        try await runConnection(handler, port: port, group: group)
                    } while deadline.map { ContinuousClock.now < $0 } ?? false
                }
            }
            try await tasks.waitForAll()
        }
        return results.withLockedValue { $0 }
    }

    /// One connection, until its handler is done with it or the server closes it.
    private static func runConnection(_ handler: LoadConnectionHandler, port: Int, group: EventLoopGroup) async throws {
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await channel.closeFuture.get()
    }
}

private final class LoadConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let host: String
    let path: String
    var remaining: Int
    let deadline: ContinuousClock.Instant?
    let results: NIOLockedValueBox<[HTTPLoadClient.Response]>
    var current: HTTPLoadClient.Response?

    init(
        host: String, path: String, limit: Int, deadline: ContinuousClock.Instant?,
        results: NIOLockedValueBox<[HTTPLoadClient.Response]>
    ) {
        self.host = host
        self.path = path
        self.remaining = deadline == nil ? limit : .max
        self.deadline = deadline
        self.results = results
    }

    func channelActive(context: ChannelHandlerContext) {
        sendNext(context: context)
    }

    private func sendNext(context: ChannelHandlerContext) {
        if remaining == 0 || deadline.map({ ContinuousClock.now >= $0 }) == true {
            context.close(promise: nil)
            return
        }
        remaining -= 1
        current = .init(status: 0, meshError: nil, sent: .now, latency: .zero)
        let head = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: path, headers: ["host": host, "content-length": "0"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            current?.status = Int(head.status.code)
            current?.meshError = head.headers.first(name: "x-mesh-error")
        case .body:
            break
        case .end:
            guard var response = current else { return }
            response.latency = response.sent.duration(to: .now)
            current = nil
            results.withLockedValue { $0.append(response) }
            sendNext(context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
