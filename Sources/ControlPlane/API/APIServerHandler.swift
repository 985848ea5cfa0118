import NIOCore
import NIOHTTP1
import SidecarCore

/// The last handler of an API connection: gathers one HTTP request (refusing bodies over
/// `maxBodySize` with 413), hands it to the `APIRouter` off the event loop, writes the answer.
///
/// Learns the client's verified SPIFFE ID from `TLSEvent.handshakeCompleted`. One request at a
/// time per connection (NIO's pipelining assistance holds the next one back).
final class APIServerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// The body was too large: 413 was sent; the rest of the body (up to a bound) is read
        /// and dropped, then the connection closes. Closing with unread bytes would reset the
        /// connection and could destroy the 413 before the client reads it.
        case discarding(dropped: Int)
        case responding
    }

    private let router: APIRouter
    private let maxBodySize: Int
    private var state = State.idle
    private var peerIdentity: SPIFFEID?
    /// The request being answered off the event loop; cancelled if the client goes away.
    private var inFlight: Task<Void, Never>?

    init(router: APIRouter, maxBodySize: Int) {
        self.router = router
        self.maxBodySize = maxBodySize
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            peerIdentity = info.peerIdentity
        }
        // A connection that sends nothing for the idle timeout is closed, unless we owe it an
        // answer (a long-poll watch is quiet on purpose).
        if case .read = event as? IdleStateHandler.IdleStateEvent {
            if case .responding = state { return }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .idle):
            let declared = head.headers.first(name: "content-length").flatMap(Int.init) ?? 0
            if declared > maxBodySize {
                refuseOversized(context: context, head: head)
            } else {
                state = .receiving(head, context.channel.allocator.buffer(capacity: declared))
            }
        case (.body(var chunk), .receiving(let head, var body)):
            if body.readableBytes + chunk.readableBytes > maxBodySize {
                refuseOversized(context: context, head: head)
            } else {
                body.writeBuffer(&chunk)
                state = .receiving(head, body)
            }
        case (.end, .receiving(let head, let body)):
            state = .responding
            dispatch(context: context, head: head, body: body)
        case (.body(let chunk), .discarding(let dropped)):
            state = .discarding(dropped: dropped + chunk.readableBytes)
            if dropped + chunk.readableBytes > 8 * maxBodySize { context.close(promise: nil) }
        case (.end, .discarding):
            context.close(promise: nil)
        default:
            // The rest of a refused body, or parts after a response began: dropped.
            break
        }
    }

    /// Answers 413 at once (announcing the close), then drops the rest of the body.
    private func refuseOversized(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let error = APIError(413, "request body larger than \(maxBodySize) bytes")
        router.controlPlane.metrics.countRequest(route: "oversized", code: 413)
        write(context: context, head: head, response: APIResponse(error), close: false, connectionClose: true)
        state = .discarding(dropped: 0)
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let request = APIRequest(
            method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) },
            body: String(buffer: body), peerIdentity: peerIdentity)
        let router = router
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        inFlight = Task {
            let response = await router.handle(request)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.write(context: context, head: head, response: response, close: !head.isKeepAlive)
            }
        }
    }

    /// - Parameters:
    ///   - close: close once the response is written.
    ///   - connectionClose: announce `connection: close` (implied by `close`).
    private func write(
        context: ChannelHandlerContext, head: HTTPRequestHead, response: APIResponse, close: Bool,
        connectionClose: Bool = false
    ) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        let body = response.bytes
        headers.add(name: "content-type", value: response.contentType)
        headers.add(name: "content-length", value: String(body.readableBytes))
        if close || connectionClose { headers.add(name: "connection", value: "close") }
        let responseHead = HTTPResponseHead(
            version: head.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        state = .idle
        if close {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.futureResult.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        inFlight?.cancel()
        inFlight = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
