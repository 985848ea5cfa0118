import NIOCore
import NIOHTTP1
import NIOPosix

/// `demo-app NAME HOST:PORT`: a tiny service for the demo mesh. Answers every request with a
/// JSON line naming itself, the path and the caller the mesh vouched for (`x-mesh-caller`).
let arguments = CommandLine.arguments
guard arguments.count == 3, let colon = arguments[2].lastIndex(of: ":"),
    let port = Int(arguments[2][arguments[2].index(after: colon)...])
else {
    print("usage: demo-app NAME HOST:PORT")
    exit(2)
}
let name = arguments[1]
let host = String(arguments[2][..<colon])

final class DemoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let name: String
    init(name: String) { self.name = name }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let caller = head.headers["x-mesh-caller"].first ?? ""
        let body = "{\"service\":\"\(name)\",\"method\":\"\(head.method.rawValue)\",\"path\":\"\(head.uri)\",\"caller\":\"\(caller)\"}\n"
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", "\(body.utf8.count)")])
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline().flatMap {
            channel.pipeline.addHandler(DemoHandler(name: name))
        }
    }
    .bind(host: host, port: port).wait()
print("demo-app \(name) listening on \(channel.localAddress.map { "\($0)" } ?? "?")")
try channel.closeFuture.wait()
