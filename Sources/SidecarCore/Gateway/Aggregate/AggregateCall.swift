import NIOCore

/// One call of an aggregate, made as the sidecar makes an outbound request to its service: the
/// destination's Route rule picks the subset and bounds the call (its timeout, never past the
/// aggregate's), the call holds one of the circuit breaker's `maxRequests` slots until it ends
/// (refused at once with `circuit-open`; a refusal or a lack of healthy endpoints gives the
/// TrafficPolicy's `fallback` body as the call's value, as the proxy answers with it, when it
/// is JSON: `AggregateMerge.outcome(_:)`), an endpoint comes from the loop's balancer avoiding
/// those already tried, a connection from the loop's pool (mTLS with the gateway's identity).
/// Each try's outcome goes to outlier detection and the balancer; a failed try is retried where
/// `Cluster.decideRetry` says so (the route's `retryOn`/`attempts`/`perTryTimeout`, the retry
/// budget, `maxRetries`), a failed connect on another endpoint as `retriesConnectFailure` says,
/// exactly as the proxy's own tries. Each call is counted once in the outbound request metrics
/// of its service. Reports once; lives on the request's loop.
final class AggregateCall: UpstreamOwner {
    private let call: GatewayAggregate.Call
    private let loop: LoopContext
    private var report: ((AggregateMerge.Outcome) -> Void)?
    private var ended = false
    private let started: NIODeadline
    private var route: (destination: RouteTable.Destination, rule: RouteRule)?
    private var retry: RetryStateMachine?
    private var tried = TriedEndpoints()
    private var attempts = 0
    private var holdsRequestSlot = false
    private var holdsRetrySlot = false
    private var head = ByteBuffer()
    /// The call's deadline (`timeout`) and the current try's (`perTryTimeout`).
    private var timer: Scheduled<Void>?
    private var tryTimer: Scheduled<Void>?
    // The current try.
    private var upstream: UpstreamHandler?
    private var key: ConnectionPool.Key?
    private var outstanding = false
    private var tryStartedAt: NIODeadline
    /// Moves when a try starts or is dropped, so a late lease result of an older try is discarded.
    private var epoch = 0
    private var status = 0
    private var meshError: String?
    private var body: [UInt8] = []
    private var chunked = false

    init(_ call: GatewayAggregate.Call, loop: LoopContext, report: @escaping (AggregateMerge.Outcome) -> Void) {
        self.call = call
        self.loop = loop
        self.report = report
        started = loop.now
        tryStartedAt = started
    }

    /// Starts the first try; `timeout` is what the aggregate has left for it.
    func start(headers: [HTTPHeaderLine], timeout: TimeAmount) {
        guard let destination = loop.table.destinations[call.service] else {
            return end(.failed(ProxyError.Cause.noHealthyEndpoint.rawValue), reusable: false)
        }
        let path = Substring(call.path.prefix { $0 != "?" })
        guard let index = destination.ruleIndex(path: path, method: "GET", header: { _ in nil }) else {
            return end(.failed(ProxyError.Cause.noRoute.rawValue), reusable: false)
        }
        let rule = destination.rules[index]
        route = (destination, rule)
        let cluster = loop.cluster(destination)
        if let refusal = cluster.admitRequest() { return refuse(refusal) }
        holdsRequestSlot = true
        let now = loop.now
        let deadline = now + min(timeout, rule.timeout.timeAmount)
        retry = RetryStateMachine(policy: rule.retries, request: .init(method: .GET, contentLength: 0), deadline: deadline)
        cluster.retryBudgetRequestStarted(now: now)
        timer = loop.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.end(.failed(ProxyError.Cause.timeout.rawValue), reusable: false)
        }
        head.writeString("GET \(call.path) HTTP/1.1\r\nhost: \(call.service)\r\naccept: application/json\r\n")
        for line in headers { head.writeString("\(line.name): \(line.value)\r\n") }
        head.writeStaticString("\r\n")
        startTry()
    }

    /// The aggregate answered without this call: drop the connection.
    func cancel() {
        report = nil
        end(.failed(ProxyError.Cause.timeout.rawValue), reusable: false)
    }

    // MARK: Tries

    private func startTry() {
        guard !ended, let (destination, rule) = route else { return }
        guard let endpoint = loop.pickEndpoint(destination, rule: rule, excluding: tried) else {
            var error = ProxyError(.noHealthyEndpoint, "service \(destination.service) has no healthy endpoint")
            error.fallback = destination.policy.fallback
            return refuse(error)
        }
        tried.insert(endpoint.address)
        attempts += 1
        epoch &+= 1
        let epoch = self.epoch
        let key = ConnectionPool.Key(address: endpoint.address, service: destination.service)
        self.key = key
        loop.pool.lease(key, cluster: loop.existingCluster(destination.service), connectTimeout: destination.policy.connectTimeout.timeAmount)
            .assumeIsolated().whenComplete { [self] result in
                guard !ended, self.epoch == epoch else {
                    if case .success(let upstream) = result { upstream.channel?.close(promise: nil) }
                    return
                }
                switch result {
                case .success(let upstream): connected(upstream, key: key)
                case .failure(let error): connectFailed(error as? ProxyError ?? ProxyError(.connectFailed, "\(error)"), key: key)
                }
            }
    }

    private func connected(_ upstream: UpstreamHandler, key: ConnectionPool.Key) {
        guard upstream.channel != nil else { return end(.failed(ProxyError.Cause.upstreamReset.rawValue), reusable: false) }
        self.upstream = upstream
        status = 0
        meshError = nil
        body = []
        chunked = false
        loop.existingCluster(call.service)?.tryStarted(at: key.address)
        outstanding = true
        tryStartedAt = loop.now
        upstream.begin(owner: self, method: .GET)
        upstream.send(head)
        upstream.flush()
        if let retry, retry.policy.perTryTimeout != nil {
            let due = retry.tryDeadline(now: tryStartedAt)
            if due < retry.deadline {
                tryTimer = loop.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [weak self] in self?.tryTimedOut() }
            }
        }
    }

    /// As the proxy: a failed connect is an outlier outcome, and goes to another endpoint
    /// (it never reached the upstream) while the rule's attempts and untried endpoints last.
    private func connectFailed(_ error: ProxyError, key: ConnectionPool.Key) {
        guard let (destination, rule) = route else { return }
        if error.cause == .connectFailed {
            loop.recordOutcome(.connectFailure, service: destination.service, address: key.address)
            if destination.retriesConnectFailure(rule: rule, attempts: attempts, tried: tried) { return startTry() }
        }
        refuse(error)  // a pool limit's circuit-open carries the fallback
    }

    /// Ends the call with an error this sidecar made (no answer came): its `fallback` body as
    /// the value when it carries a JSON one (counted with the fallback's status, as the proxy
    /// counts a fallback it serves), else its cause.
    private func refuse(_ error: ProxyError) {
        if error.fallback != nil { status = error.effectiveStatus }
        end(AggregateMerge.outcome(error), reusable: false)
    }

    private func tryTimedOut() {
        tryTimer = nil
        if retryElsewhere(after: .perTryTimeout) { return }
        end(.failed(ProxyError.Cause.timeout.rawValue), reusable: false)
    }

    /// Drops the current try and starts another after the backoff when the destination's
    /// cluster decides so (the same decision as the proxy's: `Cluster.decideRetry`).
    private func retryElsewhere(after failure: RetryStateMachine.Failure) -> Bool {
        guard var retry, let destination = route?.destination else { return false }
        let action = loop.cluster(destination).decideRetry(
            &retry, after: failure, from: key?.address, holdsRetrySlot: &holdsRetrySlot, now: loop.now, random: &loop.random)
        self.retry = retry
        guard case .retry(let backoff, let exclude) = action else { return false }
        dropTry()
        if let exclude { tried.insert(exclude) }
        loop.eventLoop.assumeIsolated().scheduleTask(in: backoff) { [weak self] in self?.startTry() }
        return true
    }

    /// The current try's connection is closed (or reused when `reusable`), its timer stopped,
    /// and it no longer counts as outstanding on its endpoint.
    private func dropTry(reusable: Bool = false) {
        epoch &+= 1
        tryTimer?.cancel()
        tryTimer = nil
        if let upstream, let key {
            self.upstream = nil
            if reusable { loop.pool.release(upstream, key: key) } else { upstream.abandon() }
        }
        if outstanding, let key {
            outstanding = false
            loop.existingCluster(call.service)?.tryEnded(at: key.address)
        }
    }

    private func end(_ outcome: AggregateMerge.Outcome, reusable: Bool) {
        guard !ended else { return }
        ended = true
        timer?.cancel()
        timer = nil
        dropTry(reusable: reusable)
        if let destination = route?.destination {
            if holdsRequestSlot || holdsRetrySlot {
                loop.cluster(destination).releaseSlots(request: holdsRequestSlot, retry: holdsRetrySlot)
                holdsRequestSlot = false
                holdsRetrySlot = false
            }
            destination.requestMetrics?.record(
                status: Self.status(of: outcome, received: status),
                durationNanos: loop.now.uptimeNanoseconds &- started.uptimeNanoseconds, responseBytes: UInt64(body.count))
        }
        guard let report else { return }
        self.report = nil
        report(outcome)
    }

    /// The status a call is counted with: the answer's, else the one the sidecar gives its cause.
    private static func status(of outcome: AggregateMerge.Outcome, received: Int) -> Int {
        if received != 0 { return received }
        if case .failed(let cause) = outcome, let cause = ProxyError.Cause(rawValue: cause) { return cause.status }
        return 502
    }

    // MARK: UpstreamOwner

    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool) {
        guard final, let key else { return }
        tryTimer?.cancel()
        tryTimer = nil
        let now = loop.now
        loop.recordOutcome(.status(head.status), service: call.service, address: key.address)
        loop.existingCluster(call.service)?.observeLatency(now - tryStartedAt, of: key.address, now: now)
        if head.status >= 500, retryElsewhere(after: .status(head.status)) { return }
        status = head.status
        chunked = head.framing.body == .chunked
        meshError = head.headers.firstValue(named: "x-mesh-error")
    }

    func upstreamBody(_ bytes: ByteBuffer) {
        guard !ended else { return }
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
        if !responseStarted, let key {
            loop.recordOutcome(.reset, service: call.service, address: key.address)
            if error.cause == .upstreamReset, retryElsewhere(after: .reset) { return }
        }
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
