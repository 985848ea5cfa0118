import NIOCore

/// One request of an aggregate rule: its calls (`AggregateCall`, each a GET through the mesh as
/// an outbound request to its service would go: route rule, breaker, balancer, retries, outlier
/// detection) go out in parallel, and when all have ended or `timeout` passed, `AggregateMerge`
/// makes the answer. Lives on the request's loop; kept alive by its calls and its timer.
final class AggregateExchange {
    private let aggregate: GatewayAggregate
    private let loop: LoopContext
    private var calls: [AggregateCall] = []
    private var outcomes: [String: AggregateMerge.Outcome] = [:]
    private var timer: Scheduled<Void>?
    private var done: ((Result<String, ProxyError>) -> Void)?

    private init(aggregate: GatewayAggregate, loop: LoopContext, done: @escaping (Result<String, ProxyError>) -> Void) {
        self.aggregate = aggregate
        self.loop = loop
        self.done = done
    }

    /// Starts every call of `request`'s aggregate rule; `done` runs once on the loop with the
    /// answer (200, the merged JSON) or the error, for either codec to write.
    static func start(
        _ aggregate: GatewayAggregate, for request: AdmittedRequest, loop: LoopContext,
        done: @escaping (Result<EdgeResponse, ProxyError>) -> Void
    ) {
        start(aggregate, headers: callHeaders(request), loop: loop) { result in
            done(result.map { EdgeResponse(status: 200, headers: [("content-type", "application/json")], body: $0) })
        }
    }

    /// Each call carries what this hop would send upstream: request id, its span, the verified user.
    static func callHeaders(_ request: AdmittedRequest) -> [HTTPHeaderLine] {
        var headers = request.addedHeaders.filter { ["x-request-id", "traceparent", "x-mesh-user"].contains($0.name) }
        if !headers.contains(where: { $0.name == "x-request-id" }),
            let id = try? HTTPHeaderLine(name: "x-request-id", value: request.exchange.requestID)
        {
            headers.append(id)
        }
        return headers
    }

    /// Starts every call; `done` runs once on the loop with the answer's body or the error.
    /// `headers` are lines each call carries (request id, trace context, `x-mesh-user`).
    private static func start(
        _ aggregate: GatewayAggregate, headers: [HTTPHeaderLine], loop: LoopContext,
        done: @escaping (Result<String, ProxyError>) -> Void
    ) {
        let exchange = AggregateExchange(aggregate: aggregate, loop: loop, done: done)
        // The timer holds the exchange until it answers (finish cancels it).
        exchange.timer = loop.eventLoop.assumeIsolated().scheduleTask(in: aggregate.timeout.timeAmount) { exchange.finish() }
        for call in aggregate.calls {
            let running = AggregateCall(call, loop: loop) { [weak exchange] outcome in
                exchange?.ended(call.key, outcome)
            }
            exchange.calls.append(running)
            running.start(headers: headers, timeout: aggregate.timeout.timeAmount)
        }
    }

    private func ended(_ key: String, _ outcome: AggregateMerge.Outcome) {
        guard done != nil else { return }
        outcomes[key] = outcome
        if outcomes.count == aggregate.calls.count { finish() }
    }

    /// Answers with what came; calls still running are dropped (their keys read `timeout`).
    private func finish() {
        guard let done else { return }
        self.done = nil
        timer?.cancel()
        timer = nil
        for call in calls { call.cancel() }
        calls = []
        done(AggregateMerge.answer(keys: aggregate.calls.map(\.key), outcomes: outcomes))
    }
}
