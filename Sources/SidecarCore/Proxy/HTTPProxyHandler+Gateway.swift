import NIOCore

/// The gateway's own answers that are no errors (a redirect, a CORS preflight): written like a
/// `ProxyError` response, without `x-mesh-error`, and ended like every exchange.
extension HTTPProxyHandler {
    func answer(_ exchange: ProxyExchange, _ response: EdgeResponse, context: ChannelHandlerContext) {
        exchange.cancelTimers()
        if !exchange.requestComplete { discardArrivedBody(exchange) }
        if !exchange.requestComplete { exchange.closeAfterResponse = true }
        let bytes = response.bytes(
            closing: exchange.closeAfterResponse, requestID: exchange.requestID, allocator: context.channel.allocator)
        exchange.bytesSent += response.body.utf8.count
        context.write(wrapOutboundOut(bytes), promise: nil)
        finishExchange(exchange, status: response.status, context: context)
    }
}
