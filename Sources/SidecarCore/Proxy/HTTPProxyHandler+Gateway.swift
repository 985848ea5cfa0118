import NIOCore

/// The gateway's own answers that are no errors (a redirect, a CORS preflight, an aggregate's
/// merged JSON): written like a `ProxyError` response, without `x-mesh-error`, with the
/// exchange's response lines (the rule's CORS), and ended like every exchange.
extension HTTPProxyHandler {
    func answer(_ exchange: ProxyExchange, _ response: EdgeResponse, context: ChannelHandlerContext) {
        exchange.cancelTimers()
        if !exchange.requestComplete { discardArrivedBody(exchange) }
        if !exchange.requestComplete { exchange.closeAfterResponse = true }
        let bytes = response.bytes(
            closing: exchange.closeAfterResponse, requestID: exchange.requestID, adding: exchange.addedResponseHeaders, allocator: allocator)
        exchange.bytesSent += response.body.utf8.count
        context.write(wrapOutboundOut(bytes), promise: nil)
        finishExchange(exchange, status: response.status, context: context)
    }
}

/// What the gateway answers itself once every filter admitted a request: from the response
/// cache (`HTTPProxyHandler+Cache.swift`), or an aggregate rule's merged calls.
extension HTTPProxyHandler {
    /// Whether the request is (or will be) answered here rather than forwarded.
    func answeredAtEdge(_ request: AdmittedRequest, context: ChannelHandlerContext) -> Bool {
        guard request.gatewayMatch?.answersAtEdge == true else { return false }  // most rules: forwarded
        if answerFromCache(request, context: context) { return true }
        guard case .gateway = direction, let aggregate = request.gatewayMatch?.rule.aggregate else { return false }
        let exchange = request.exchange
        phase = .connecting
        AggregateExchange.start(aggregate, for: request, loop: loop) { [self] result in
            guard self.exchange === exchange, let context = self.context else { return }
            switch result {
            case .success(let response):
                self.answer(exchange, response, context: context)
            case .failure(let error):
                self.fail(exchange, error, context: context)
            }
        }
        return true
    }
}
