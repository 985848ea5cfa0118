import NIOCore
import NIOPosix

/// Sends one OTLP/HTTP JSON export: a new TCP connection on the exporting loop, one
/// `POST <path>` with `Connection: close`, the response's status code read from its status
/// line, then closed. At most one export per loop is in flight and batches leave at most
/// about once a second, so a connection per batch costs nothing worth pooling and never
/// leaves a half-used connection behind when the collector restarts.
enum OTLPHTTPClient {
    struct ExportError: Error, CustomStringConvertible {
        let description: String
    }

    /// The response status (any status: the caller decides), or an `ExportError` when the
    /// collector cannot be reached or does not answer within `timeout`.
    static func post(
        _ body: [UInt8], to endpoint: HostPort, path: String, timeout: TimeAmount, on eventLoop: EventLoop
    ) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        var head = "POST \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nContent-Type: application/json\r\n"
        head += "Content-Length: \(body.count)\r\nConnection: close\r\nUser-Agent: mesh-sidecar/\(MeshVersion.current)\r\n\r\n"
        let request = head
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StatusLineHandler(promise: promise))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
        connected.whenSuccess { channel in
            var buffer = channel.allocator.buffer(capacity: request.utf8.count + body.count)
            buffer.writeString(request)
            buffer.writeBytes(body)
            channel.writeAndFlush(buffer, promise: nil)
            let timer = channel.eventLoop.scheduleTask(in: timeout) {
                promise.fail(ExportError(description: "no answer from \(endpoint) within \(timeout.nanoseconds / 1_000_000) ms"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        connected.whenFailure { error in
            promise.fail(ExportError(description: "cannot connect to \(endpoint): \(error)"))
        }
        return promise.futureResult
    }
}

/// Reads the status code off the response's first line and closes the connection.
private final class StatusLineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<Int>
    private var received = ByteBuffer()

    init(promise: EventLoopPromise<Int>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        let view = received.readableBytesView
        guard let end = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if received.readableBytes > 1024 { finish(nil, context: context) }
            return
        }
        // "HTTP/1.1 200 OK": the three digits after the first space.
        let line = Array(view[view.startIndex..<end])
        let status = line.firstIndex(of: UInt8(ascii: " ")).flatMap { space -> Int? in
            let digits = line[(space + 1)...].prefix(3)
            guard digits.count == 3, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return Int(String(decoding: digits, as: UTF8.self))
        }
        finish(status, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(OTLPHTTPClient.ExportError(description: "the collector closed the connection without answering"))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(OTLPHTTPClient.ExportError(description: "\(error)"))
        context.close(promise: nil)
    }

    private func finish(_ status: Int?, context: ChannelHandlerContext) {
        if let status {
            promise.succeed(status)
        } else {
            promise.fail(OTLPHTTPClient.ExportError(description: "the collector's answer is not HTTP"))
        }
        context.close(promise: nil)
    }
}
