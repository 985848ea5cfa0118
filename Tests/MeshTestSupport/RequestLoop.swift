import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The bounded load of the zero-loss drills: `connections` keep-alive connections to
/// 127.0.0.1:`port`, each sending `GET path` with `Host: host` one after another (a `pace`
/// apart) until `stop()` or `limit`. Unlike `HTTPLoadClient` it records every request it sent,
/// failures included: a connection that breaks or cannot be made before a response is a
/// failed request (status 0), so a drill can assert that nothing failed, not only that what
/// came back was fine. The answering app's name (`x-app`) tells which instance served it.
public final class RequestLoop: Sendable {
    /// One request as the client saw it.
    public struct Outcome: Sendable {
        /// 0 when no response came (connection refused, reset or closed mid-request).
        public var status: Int
        /// The `x-app` header: which `TestHTTPApp` answered.
        public var app: String?
        /// The `x-mesh-error` header and the error body's start, or the client's error when no
        /// response came.
        public var error: String?
        public var sent: ContinuousClock.Instant
    }

    private let recorded = NIOLockedValueBox<[Outcome]>([])
    private let stopped = NIOLockedValueBox(false)
    private let workers: Task<Void, Never>

    public init(
        port: Int, host: String, path: String = "/", connections: Int = 2, pace: Duration = .milliseconds(5),
        limit: Duration = .seconds(90), group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        let recorded = recorded, stopped = stopped
        let deadline = ContinuousClock.now + limit
        let settings = LoopConnectionHandler.Settings(
            host: host, path: path, pace: .nanoseconds(Int64(pace.components.seconds) * 1_000_000_000
                + pace.components.attoseconds / 1_000_000_000), deadline: deadline)
        workers = Task {
            await withTaskGroup(of: Void.self) { tasks in
                for _ in 0..<connections {
                    tasks.addTask {
                        while !stopped.withLockedValue({ $0 }), ContinuousClock.now < deadline {
                            let handler = LoopConnectionHandler(settings: settings, recorded: recorded, stopped: stopped)
                            do {
                                let channel = try await ClientBootstrap(group: group)
                                    .channelInitializer { channel in
                                        channel.eventLoop.makeCompletedFuture {
                                            try channel.pipeline.syncOperations.addHTTPClientHandlers()
                                            try channel.pipeline.syncOperations.addHandler(handler)
                                        }
                                    }
                                    .connect(host: "127.0.0.1", port: port).get()
                                try await channel.closeFuture.get()
                            } catch {
                                recorded.withLockedValue {
                                    $0.append(Outcome(status: 0, app: nil, error: "connect: \(error)", sent: .now))
                                }
                                try? await Task.sleep(for: pace)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every request so far.
    public var outcomes: [Outcome] { recorded.withLockedValue { $0 } }
    public var count: Int { recorded.withLockedValue { $0.count } }
    /// Requests without a 200 answer.
    public var failures: [Outcome] { outcomes.filter { $0.status != 200 } }

    /// Stops sending, waits for the requests in flight, and returns every outcome.
    @discardableResult
    public func stop() async -> [Outcome] {
        stopped.withLockedValue { $0 = true }
        await workers.value
        return outcomes
    }

    /// Waits (bounded) until `more` requests beyond the current count have completed.
    public func waitFor(_ more: Int, timeout: Duration = .seconds(30)) async -> Bool {
        let target = count + more
        return await eventually(timeout: timeout) { self.count >= target }
    }
}

private final class LoopConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Settings: Sendable {
        var host: String
        var path: String
        var pace: TimeAmount
        var deadline: ContinuousClock.Instant
    }

    let settings: Settings
    let recorded: NIOLockedValueBox<[RequestLoop.Outcome]>
    let stopped: NIOLockedValueBox<Bool>
    /// The request in flight on this connection, if any.
    var current: RequestLoop.Outcome?
    var keepAlive = true

    init(settings: Settings, recorded: NIOLockedValueBox<[RequestLoop.Outcome]>, stopped: NIOLockedValueBox<Bool>) {
        self.settings = settings
        self.recorded = recorded
        self.stopped = stopped
    }

    func channelActive(context: ChannelHandlerContext) {
        sendNext(context: context)
    }

    private func sendNext(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if stopped.withLockedValue({ $0 }) || ContinuousClock.now >= settings.deadline {
            context.close(promise: nil)
            return
        }
        current = .init(status: 0, app: nil, error: nil, sent: .now)
        let head = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: settings.path, headers: ["host": settings.host, "content-length": "0"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            current?.status = Int(head.status.code)
            current?.app = head.headers.first(name: "x-app")
            current?.error = head.headers.first(name: "x-mesh-error")
            keepAlive = head.isKeepAlive
        case .body(let body):
            // A mesh error's body says why (the sidecar's detail): kept for the test's message.
            if let status = current?.status, status != 200, let error = current?.error, error.count < 400 {
                current?.error = error + " " + String(buffer: body)
            }
        case .end:
            guard let response = current else { return }
            current = nil
            recorded.withLockedValue { $0.append(response) }
            guard keepAlive else {
                context.close(promise: nil)
                return
            }
            context.eventLoop.assumeIsolated().scheduleTask(in: settings.pace) { self.sendNext(context: context) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed with a request unanswered: that request failed.
        if var failed = current {
            current = nil
            failed.status = 0
            failed.error = failed.error ?? "connection closed before the response"
            recorded.withLockedValue { $0.append(failed) }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        current?.error = "\(error)"
        context.close(promise: nil)
    }
}
