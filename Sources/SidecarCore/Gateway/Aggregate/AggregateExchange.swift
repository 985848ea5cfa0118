import NIOCore

/// One request of an aggregate rule: its calls go out in parallel, each a GET through the mesh
/// as an outbound request would go (the destination's Route rule picks the subset and bounds
/// the call's timeout; an endpoint from the loop's balancer; a connection from the loop's pool,
/// mTLS with the gateway's identity), and when all have ended or `timeout` passed, `AggregateMerge`
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

/// One call of an aggregate: lease, send the GET, gather the answer (bounded), report once.
final class AggregateCall: UpstreamOwner {
    private let call: GatewayAggregate.Call
    private let loop: LoopContext
    private var report: ((AggregateMerge.Outcome) -> Void)?
    private var upstream: UpstreamHandler?
    private var key: ConnectionPool.Key?
    private var timer: Scheduled<Void>?
    private var status = 0
    private var meshError: String?
    private var body: [UInt8] = []
    private var chunked = false

    init(_ call: GatewayAggregate.Call, loop: LoopContext, report: @escaping (AggregateMerge.Outcome) -> Void) {
        self.call = call
        self.loop = loop
        self.report = report
    }

    func start(headers: [HTTPHeaderLine], timeout: TimeAmount) {
        guard let destination = loop.table.destinations[call.service] else {
            return end(.failed(ProxyError.Cause.noHealthyEndpoint.rawValue), reusable: false)
        }
        let path = Substring(call.path.prefix { $0 != "?" })
        guard let index = destination.ruleIndex(path: path, method: "GET", header: { _ in nil }) else {
            return end(.failed(ProxyError.Cause.noRoute.rawValue), reusable: false)
        }
        let rule = destination.rules[index]
        guard let endpoint = loop.pickEndpoint(destination, rule: rule) else {
            return end(.failed(ProxyError.Cause.noHealthyEndpoint.rawValue), reusable: false)
        }
        let key = ConnectionPool.Key(address: endpoint.address, service: destination.service)
        self.key = key
        timer = loop.eventLoop.assumeIsolated().scheduleTask(in: min(timeout, rule.timeout.timeAmount)) { [weak self] in
            self?.end(.failed(ProxyError.Cause.timeout.rawValue), reusable: false)
        }
        var head = ByteBuffer()
        head.writeString("GET \(call.path) HTTP/1.1\r\nhost: \(call.service)\r\naccept: application/json\r\n")
        for line in headers { head.writeString("\(line.name): \(line.value)\r\n") }
        head.writeStaticString("\r\n")
        loop.pool.lease(key, cluster: loop.existingCluster(destination.service), connectTimeout: destination.policy.connectTimeout.timeAmount)
            .assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let upstream):
                    guard report != nil, let channel = upstream.channel else {
                        upstream.channel?.close(promise: nil)
                        return
                    }
                    self.upstream = upstream
                    upstream.begin(owner: self, method: .GET)
                    channel.writeAndFlush(head, promise: nil)
                case .failure(let error):
                    end(.failed((error as? ProxyError)?.cause.rawValue ?? ProxyError.Cause.connectFailed.rawValue), reusable: false)
                }
            }
    }

    /// The aggregate answered without this call: drop the connection.
    func cancel() {
        report = nil
        end(.failed(ProxyError.Cause.timeout.rawValue), reusable: false)
    }

    private func end(_ outcome: AggregateMerge.Outcome, reusable: Bool) {
        timer?.cancel()
        timer = nil
        if let upstream, let key {
            self.upstream = nil
            if reusable { loop.pool.release(upstream, key: key) } else { upstream.abandon() }
        }
        guard let report else { return }
        self.report = nil
        report(outcome)
    }

    // MARK: UpstreamOwner

    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool) {
        guard final else { return }
        status = head.status
        chunked = head.framing.body == .chunked
        meshError = head.headers.firstValue(named: "x-mesh-error")
        if let service = key?.service, let address = key?.address { loop.recordOutcome(.status(head.status), service: service, address: address) }
    }

    func upstreamBody(_ bytes: ByteBuffer) {
        guard report != nil else { return }
        if body.count + bytes.readableBytes > AggregateMerge.maxCallBodyBytes + 64 * 1024 {
            end(.failed("too-large"), reusable: false)
            return
        }
        body.append(contentsOf: bytes.readableBytesView)
    }

    func upstreamReadComplete() {}
    func upstreamWritabilityChanged(_ writable: Bool) {}

    func upstreamResponseEnd(reusable: Bool) {
        guard let decoded = chunked ? Self.dechunked(body) : body else { return end(.failed(ProxyError.Cause.upstreamReset.rawValue), reusable: false) }
        guard decoded.count <= AggregateMerge.maxCallBodyBytes else { return end(.failed("too-large"), reusable: reusable) }
        end(AggregateMerge.outcome(status: status, meshError: meshError, body: decoded), reusable: reusable)
    }

    func upstreamFailed(_ error: ProxyError, responseStarted: Bool) {
        upstream = nil  // the connection already closed itself
        end(.failed(error.cause.rawValue), reusable: false)
    }

    /// The body as the app sent it: relayed bytes keep their chunk framing, so a chunked answer
    /// is decoded here (the upstream handler already checked its framing); nil if it does not parse.
    static func dechunked(_ bytes: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = lineEnd(bytes, from: index) else { return nil }
            let sizeText = bytes[index..<lineEnd].prefix { $0 != UInt8(ascii: ";") }
            guard let size = Int(String(decoding: sizeText, as: UTF8.self).trimmingSpaces, radix: 16), size >= 0 else { return nil }
            index = lineEnd + 2
            if size == 0 { return out }  // trailers, if any, are not part of the value
            guard index + size + 2 <= bytes.count else { return nil }
            out += bytes[index..<(index + size)]
            index += size + 2
        }
    }

    private static func lineEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }
}
