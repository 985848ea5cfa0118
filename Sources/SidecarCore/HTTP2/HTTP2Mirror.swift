import NIOCore
import NIOHPACK

/// `MirrorExchange` for HTTP/2 callers: the copy goes as a stream on the loop's multiplexed
/// connection to an endpoint of the mirror subset; its response is read and discarded, its
/// outcome only counted in `sidecar_mirror_requests_total{peer,result}`.
final class HTTP2Mirror: HTTP2UpstreamOwner {
    private let loop: LoopContext
    private let service: String
    private var upstream: HTTP2UpstreamStream?
    private var timer: Scheduled<Void>?
    private var finished = false

    private init(loop: LoopContext, service: String) {
        self.loop = loop
        self.service = service
    }

    /// Starts the copy; false when the subset has no endpoint (counted as failed).
    @discardableResult
    static func send(
        head: HPACKHeaders, parts: [HTTP2RequestPart], subset: [String: String], destination: RouteTable.Destination,
        timeout: TimeAmount, loop: LoopContext
    ) -> Bool {
        guard let address = MirrorExchange.pickEndpoint(of: destination, in: subset, random: &loop.random) else {
            loop.metrics.mirrorRequests(peer: destination.service, result: .failed).increment()
            return false
        }
        let mirror = HTTP2Mirror(loop: loop, service: destination.service)
        mirror.timer = loop.eventLoop.assumeIsolated().scheduleTask(in: timeout) { mirror.finish(.failed) }
        loop.http2Pool.openStream(
            .init(address: address, service: destination.service), connectTimeout: destination.policy.connectTimeout.timeAmount,
            owner: mirror
        ).assumeIsolated().whenComplete { result in
            guard case .success(let stream) = result, !mirror.finished else {
                if case .success(let stream) = result { stream.cancel() }
                mirror.finish(.failed)
                return
            }
            mirror.upstream = stream
            stream.send(.headers(head, endStream: parts.isEmpty))
            for part in parts { stream.send(part) }
            stream.flush()
        }
        return true
    }

    private func finish(_ outcome: MirrorExchange.Outcome) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        timer = nil
        if outcome == .failed { upstream?.cancel() }
        upstream = nil
        loop.metrics.mirrorRequests(peer: service, result: outcome).increment()
    }

    func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) { if endStream { finish(.completed) } }
    func upstreamData(_ data: ByteBuffer, endStream: Bool) { if endStream { finish(.completed) } }
    func upstreamTrailers(_ trailers: HPACKHeaders) { finish(.completed) }
    func upstreamFailed(_ failure: HTTP2StreamFailure) { finish(.failed) }
    func upstreamWritabilityChanged(_ writable: Bool) {}
    func upstreamReadComplete() {}
}
