import NIOCore

/// One fire-and-forget copy of a request sent to an endpoint of a route rule's mirror subset
/// (`mirror: { subset, percent }`): the rewritten head and the buffered body go out on a
/// connection from the same loop's pool (mTLS to that endpoint's sidecar); the response is
/// read and discarded, then the connection goes back to the pool.
///
/// It never touches the caller's exchange: no retries, no breaker slot, no least-request or
/// outlier bookkeeping, no effect on the caller's response or latency. Its outcome is only
/// counted in `sidecar_mirror_requests_total{peer,result}`. Lives on the loop of the request it
/// copies; kept alive by the pending lease, then by the upstream connection's `owner`; the
/// rule's timeout bounds it.
final class MirrorExchange: UpstreamOwner {
    /// The `result` label of `sidecar_mirror_requests_total`.
    enum Outcome: String, CaseIterable {
        /// A complete response came back (any status) and was discarded.
        case completed
        /// No mirror endpoint, connect/mTLS failure, reset, or the rule's timeout.
        case failed
        /// The request body was not buffered (over the replay limit): no copy was sent.
        case skipped
    }

    private let loop: LoopContext
    private let key: ConnectionPool.Key
    private var upstream: UpstreamHandler?
    private var timer: Scheduled<Void>?
    private var finished = false

    private init(loop: LoopContext, key: ConnectionPool.Key) {
        self.loop = loop
        self.key = key
    }

    /// Starts the copy; false when the subset has no endpoint (counted as failed).
    @discardableResult
    static func send(
        head: ByteBuffer, body: ByteBuffer?, method: HTTPRequestMethod, subset: [String: String],
        destination: RouteTable.Destination, timeout: TimeAmount, loop: LoopContext
    ) -> Bool {
        guard let address = pickEndpoint(of: destination, in: subset, random: &loop.random) else {
            loop.metrics.mirrorRequests(peer: destination.service, result: .failed).increment()
            return false
        }
        let mirror = MirrorExchange(loop: loop, key: .init(address: address, service: destination.service))
        mirror.timer = loop.eventLoop.assumeIsolated().scheduleTask(in: timeout) { mirror.finish(.failed, reusable: false) }
        loop.pool.lease(
            mirror.key, cluster: loop.existingCluster(destination.service),
            connectTimeout: destination.policy.connectTimeout.timeAmount
        ).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let upstream):
                guard !mirror.finished, upstream.channel != nil else {
                    upstream.channel?.close(promise: nil)
                    return
                }
                mirror.upstream = upstream
                upstream.begin(owner: mirror, method: method)
                upstream.send(head)
                if let body, body.readableBytes > 0 { upstream.send(body) }
                upstream.flush()
            case .failure:
                mirror.finish(.failed, reusable: false)
            }
        }
        return true
    }

    /// An endpoint of the mirror subset, uniform among them, without building a candidate list.
    static func pickEndpoint(of destination: RouteTable.Destination, in subset: [String: String], random: inout LoopRandom) -> HostPort? {
        var chosen: HostPort?
        var seen = 0
        for endpoint in destination.endpoints where endpoint.matches(subset) {
            seen += 1
            if Int.random(in: 0..<seen, using: &random) == 0 { chosen = endpoint.address }
        }
        return chosen
    }

    private func finish(_ outcome: Outcome, reusable: Bool) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        timer = nil
        if let upstream {
            self.upstream = nil
            if reusable {
                loop.pool.release(upstream, key: key)
            } else {
                upstream.abandon()
            }
        }
        loop.metrics.mirrorRequests(peer: key.service ?? "unknown", result: outcome).increment()
    }

    // MARK: UpstreamOwner: the response is read and dropped.

    func upstreamResponseHead(_ head: HTTPRawResponseHead, final: Bool) {}
    func upstreamBody(_ body: ByteBuffer) {}
    func upstreamReadComplete() {}
    func upstreamWritabilityChanged(_ writable: Bool) {}

    func upstreamResponseEnd(reusable: Bool) {
        finish(.completed, reusable: reusable)
    }

    func upstreamFailed(_ error: ProxyError, responseStarted: Bool) {
        upstream = nil  // the connection already closed itself
        finish(.failed, reusable: false)
    }
}
