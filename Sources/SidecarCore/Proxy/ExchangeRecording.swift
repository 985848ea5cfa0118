import NIOCore

extension LoopContext {
    /// Every finished exchange, whichever codec carried it (an HTTP/1.1 connection, an HTTP/2
    /// stream, a tunnel), ends here once: its access log line, the breaker slots it held, and
    /// its request metrics (`handle` is the direction and peer's series), and its span when
    /// traces are exported (`kind`: server on the inbound, client on the outbound).
    func record(
        _ exchange: ProxyExchange, status: Int, accessLog: AccessLog, metrics handle: RequestMetricsHandle, span kind: SpanRecord.Kind
    ) {
        if let fill = exchange.cacheFill {  // a gateway cache fetch ended without a whole response
            exchange.cacheFill = nil
            fill.abandon()
        }
        let now = eventLoop.now
        accessLog.record(exchange, status: status, now: now, into: accessLogBuffer)
        spans?.record(exchange, status: status, kind: kind, now: now)
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

extension LoopContext {
    /// A gateway exchange's series: `direction="gateway"` and the service it went to, or `unknown`.
    func gatewayMetrics(_ exchange: ProxyExchange) -> RequestMetricsHandle {
        exchange.gatewayMetrics ?? table.gateway.unroutedMetrics ?? unroutedMetrics.outbound
    }
}

extension LoopContext {
    /// Whether `exchange`'s failed try is tried again, for both codecs: the destination's
    /// cluster decides (policy, idempotency, budget, breaker), and the exchange keeps what the
    /// access log says of it (retried reasons, or why retrying stopped). nil: answer with this
    /// failure; else start the next try after `backoff`, avoiding `exclude` when there is another.
    func retryDecision(
        for exchange: ProxyExchange, after failure: RetryStateMachine.Failure
    ) -> (backoff: TimeAmount, exclude: HostPort?)? {
        guard var retry = exchange.retry, let destination = exchange.route?.destination else { return nil }
        let action = cluster(destination).decideRetry(
            &retry, after: failure, from: exchange.upstreamAddress, holdsRetrySlot: &exchange.holdsBreakerRetry,
            now: now, random: &random)
        exchange.retry = retry
        switch action {
        case .retry(let backoff, let exclude):
            exchange.retryReasons.append(failure)
            return (backoff, exclude)
        case .giveUp(let reason):
            exchange.retryStopped = reason.rawValue
        case .budgetExhausted:
            exchange.retryStopped = "budget-exhausted"
        }
        return nil
    }
}
