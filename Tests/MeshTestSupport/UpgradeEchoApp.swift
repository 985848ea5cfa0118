import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An app that accepts an HTTP/1.1 `Upgrade` (as a WebSocket server does: 101 Switching
/// Protocols) and then echoes every byte, to prove the mesh tunnels upgraded connections.
public final class UpgradeEchoApp: Sendable {
    public let port: Int
    private let channel: Channel

    public init(group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpgradeEchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    public func close() async throws { try await channel.close() }
}

private final class UpgradeEchoHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var head: [UInt8] = []
    var upgraded = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if upgraded {
            context.writeAndFlush(data, promise: nil)
            return
        }
        head += buffer.readableBytesView
        guard let end = String(decoding: head, as: UTF8.self).range(of: "\r\n\r\n") else { return }
        let text = String(decoding: head, as: UTF8.self)
        let rest = Array(text[end.upperBound...].utf8)
        upgraded = true
        let caller = text.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("x-mesh-caller:") } ?? ""
        var response = context.channel.allocator.buffer(capacity: 128)
        response.writeString("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-seen-caller: \(caller.dropFirst(14).trimmingCharacters(in: .whitespaces))\r\n\r\n")
        response.writeBytes(rest)
        buffer.clear()
        context.writeAndFlush(wrapOutboundOut(response), promise: nil)
    }
}

import Foundation

/// A plain TCP echo server (a stand-in for a database behind its sidecar).
public final class TCPEchoApp: Sendable {
    public let port: Int
    private let channel: Channel

    public init(group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoBytesHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    public func close() async throws { try await channel.close() }
}

private final class EchoBytesHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}
