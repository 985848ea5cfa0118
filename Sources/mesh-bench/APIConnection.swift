import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// One HTTP/1.1 answer, stamped on the event loop when its last byte was parsed.
struct APIReply: Sendable {
    var status: Int
    var body: ByteBuffer
    var receivedAt: NIODeadline

    var text: String { String(buffer: body) }
}

/// Completes requests' promises in order as answers arrive (HTTP/1.1 keep-alive, one at a time
/// or pipelined). Loop-only state.
final class ReplyHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    var waiting = CircularBuffer<EventLoopPromise<APIReply>>()
    private var status = 0
    private var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            let reply = APIReply(status: status, body: body, receivedAt: .now())
            body = ByteBuffer()
            if !waiting.isEmpty { waiting.removeFirst().succeed(reply) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(BenchClientError("the control plane closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        while !waiting.isEmpty { waiting.removeFirst().fail(error) }
    }
}

/// A keep-alive HTTPS connection to the control-plane API over our `TLSHandler` and NIO's
/// HTTP/1.1 client codec: what a sidecar holds open. The bearer token goes per request, so one
/// connection can act for several services.
final class APIConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<ReplyHandler>
    private let authority: String

    private init(channel: any Channel, handler: NIOLoopBound<ReplyHandler>, authority: String) {
        self.channel = channel
        self.handler = handler
        self.authority = authority
    }

    var eventLoop: any EventLoop { channel.eventLoop }

    /// Connects (the TLS handshake runs with the first request).
    static func connect(to address: SocketAddress, context: TLSContext, on eventLoop: any EventLoop) -> EventLoopFuture<APIConnection> {
        let authority = "\(address.ipAddress ?? "127.0.0.1"):\(address.port ?? 0)"
        return ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: context))
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(ReplyHandler())
                }
            }
            .connect(to: address)
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: ReplyHandler.self)
                return APIConnection(
                    channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), authority: authority)
            }
    }

    func request(
        _ method: HTTPMethod, _ uri: String, token: String?, body: String? = nil, contentType: String = "application/json"
    ) -> EventLoopFuture<APIReply> {
        if eventLoop.inEventLoop { return send(method, uri, token: token, body: body, contentType: contentType) }
        return eventLoop.flatSubmit { self.send(method, uri, token: token, body: body, contentType: contentType) }
    }

    private func send(_ method: HTTPMethod, _ uri: String, token: String?, body: String?, contentType: String) -> EventLoopFuture<APIReply> {
        let promise = eventLoop.makePromise(of: APIReply.self)
        guard channel.isActive else {
            promise.fail(BenchClientError("connection to the control plane is closed"))
            return promise.futureResult
        }
        handler.value.waiting.append(promise)
        var headers = HTTPHeaders()
        headers.add(name: "host", value: authority)
        if let token { headers.add(name: "authorization", value: "Bearer \(token)") }
        let buffer = body.map { channel.allocator.buffer(string: $0) }
        headers.add(name: "content-length", value: String(buffer?.readableBytes ?? 0))
        if body != nil { headers.add(name: "content-type", value: contentType) }
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)), promise: nil)
        if let buffer { channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return promise.futureResult
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// VmRSS of a process in MiB, from /proc.
func residentMiB(pid: Int32) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return .nan }
    let kib = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) } ?? .nan
    return kib / 1024
}
