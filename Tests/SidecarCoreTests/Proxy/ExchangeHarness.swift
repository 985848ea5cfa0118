import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// Puts every upstream connection on an `EmbeddedChannel` of the test's loop, so a whole
/// exchange (downstream bytes → routing, policy, pool → upstream bytes → response) runs in
/// memory and `advanceTime` drives every timer. Endpoints in `refused` fail to connect.
final class EmbeddedUpstreamConnector: UpstreamConnector, @unchecked Sendable {
    let loop: EmbeddedEventLoop
    /// Every connection opened, in order.
    private(set) var connections: [(address: HostPort, channel: EmbeddedChannel)] = []
    var refused: Set<HostPort> = []

    init(loop: EmbeddedEventLoop) { self.loop = loop }

    func connect(
        _ key: ConnectionPool.Key, upstream: UpstreamHandler, trustDomain: String, timeout: TimeAmount,
        on eventLoop: EventLoop
    ) -> EventLoopFuture<Void> {
        if refused.contains(key.address) {
            return loop.makeFailedFuture(ProxyError(.connectFailed, "connect to \(key.address) failed: refused"))
        }
        let channel = EmbeddedChannel(loop: loop)
        do {
            try channel.pipeline.syncOperations.addHandler(upstream)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: key.address.port)).wait()
        } catch {
            return loop.makeFailedFuture(error)
        }
        connections.append((key.address, channel))
        return loop.makeSucceededFuture(())
    }

    /// What the proxy wrote to the upstream connection at `index` so far.
    func received(_ index: Int) throws -> String {
        var all = ByteBuffer()
        while var part = try connections[index].channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        return String(buffer: all)
    }

    /// The upstream at `index` answers.
    func respond(_ index: Int, _ response: String) throws {
        try connections[index].channel.writeInbound(ByteBuffer(string: response))
    }
}

/// One outbound proxy handler (web → payments) on an embedded loop, with the upstream
/// connector above. `payments` has endpoints 10.0.0.1 and 10.0.0.2 (labels `v: 1` and `v: 2`).
struct ExchangeHarness {
    static let first = HostPort(host: "10.0.0.1", port: 15006)
    static let second = HostPort(host: "10.0.0.2", port: 15006)

    let loop = EmbeddedEventLoop()
    let downstream: EmbeddedChannel
    let upstreams: EmbeddedUpstreamConnector
    let metrics = SidecarMetrics()
    let context: LoopContext

    static let ledger = HostPort(host: "10.0.0.9", port: 15006)

    /// `ledgerPolicy`: also a `ledger` service (one endpoint, `ledger`, one catch-all rule).
    /// `extraResources` and `direction`: a gateway in front of payments (GatewayRoutes, policies).
    init(
        rules: [RouteRule], policy: TrafficPolicy = .default(service: "payments"), endpoints: [HostPort] = [first, second],
        ledgerPolicy: TrafficPolicy? = nil, extraResources: [MeshResource] = [],
        direction: HTTPProxyHandler.Direction = .outbound
    ) throws {
        var resources: [MeshResource] = endpoints.enumerated().map { index, endpoint in
            .instance(Instance(service: "payments", address: endpoint.host, port: endpoint.port, labels: ["v": "\(index + 1)"]))
        }
        resources.append(.route(Route(service: "payments", rules: rules)))
        resources.append(.trafficPolicy(policy))
        if let ledgerPolicy {
            resources.append(.instance(Instance(service: "ledger", address: Self.ledger.host, port: Self.ledger.port)))
            resources.append(.route(Route(service: "ledger", rules: [RouteRule()])))
            resources.append(.trafficPolicy(ledgerPolicy))
        }
        resources += extraResources
        upstreams = EmbeddedUpstreamConnector(loop: loop)
        let table = RouteTable(localService: "web", trustDomain: "mesh.local", resources: resources, metrics: metrics)
        context = LoopContext(eventLoop: loop, table: table, connector: upstreams, metrics: metrics)
        context.random = LoopRandom(seed: 7)
        downstream = EmbeddedChannel(loop: loop)
        try downstream.pipeline.syncOperations.addHandler(
            HTTPProxyHandler(direction: direction, loop: context, accessLog: AccessLog(enabled: false, direction: "test")))
        try downstream.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// A connection accepted on a transparent outbound port, redirected on its way to
    /// `originalDestination` (nil: not redirected), on the same loop and proxy state.
    func interceptedDownstream(
        originalDestination: HostPort?, unknown: SidecarConfiguration.UnknownDestinationPolicy = .passthrough
    ) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        let log = AccessLog(enabled: false, direction: "test")
        try channel.pipeline.syncOperations.addHandler(InterceptedConnectionHandler(
            originalDestination: originalDestination, loop: context,
            listener: .init(unknown: unknown, httpLog: log, tcpLog: log, timeouts: .init(), drainTimeout: .seconds(1))))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 3)).wait()
        return channel
    }

    /// A second downstream connection on the same loop and proxy state.
    func anotherDownstream() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(
            HTTPProxyHandler(direction: .outbound, loop: context, accessLog: AccessLog(enabled: false, direction: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        return channel
    }

    func send(_ request: String, on channel: EmbeddedChannel? = nil) throws {
        try (channel ?? downstream).writeInbound(ByteBuffer(string: request))
    }

    /// What the downstream client received so far.
    func answer(on channel: EmbeddedChannel? = nil) throws -> String {
        var all = ByteBuffer()
        while var part = try (channel ?? downstream).readOutbound(as: ByteBuffer.self) { all.writeBuffer(&part) }
        return String(buffer: all)
    }

    /// Tries outstanding on `address` of `payments` (least-request / EWMA bookkeeping).
    func outstanding(_ address: HostPort) -> Int {
        context.existingCluster("payments")?.outstandingTries(at: address) ?? 0
    }

    static func get(_ path: String = "/pay") -> String { "GET \(path) HTTP/1.1\r\nHost: payments\r\n\r\n" }
    static let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    static let unavailable = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
}
