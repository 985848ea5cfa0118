import NIOCore

extension LoopContext {
    /// Every finished exchange, whichever codec carried it (an HTTP/1.1 connection, an HTTP/2
    /// stream, a tunnel), ends here once: its access log line, the breaker slots it held, and
    /// its request metrics (`handle` is the direction and peer's series).
    func record(_ exchange: ProxyExchange, status: Int, accessLog: AccessLog, metrics handle: RequestMetricsHandle) {
        let now = eventLoop.now
        accessLog.record(exchange, status: status, now: now, into: accessLogBuffer)
        if exchange.holdsBreakerRequest || exchange.holdsBreakerRetry, let destination = exchange.route?.destination {
            let (request, retry) = (exchange.holdsBreakerRequest, exchange.holdsBreakerRetry)
            exchange.holdsBreakerRequest = false
            exchange.holdsBreakerRetry = false
            cluster(destination).releaseSlots(request: request, retry: retry)
        }
        let elapsed = now.uptimeNanoseconds &- exchange.start.uptimeNanoseconds
        if exchange.poolKey?.tunnel == true {
            handle.recordBytes(request: UInt64(exchange.bytesReceived), response: UInt64(exchange.bytesSent))
        } else {
            handle.record(
                status: status, durationNanos: elapsed, requestBytes: UInt64(exchange.bytesReceived),
                responseBytes: UInt64(exchange.bytesSent))
        }
    }
}
