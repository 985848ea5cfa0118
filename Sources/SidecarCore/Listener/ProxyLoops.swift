import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The per-event-loop proxy contexts, made once at start (one per loop) and looked up once per
/// accepted connection; they share one `SharedLimits` (exact breaker and rate limits) and one
/// `GatewayResponseCaches` (the gateway rules' cache stores). Swapping the route table sends it to each loop, so requests read it
/// without a lock.
final class ProxyLoops: Sendable {
    /// Each loop's context, reachable from other threads only by a task on its own loop.
    private let contexts: [ObjectIdentifier: NIOLoopBound<LoopContext>]
    private let all: [(eventLoop: EventLoop, context: NIOLoopBound<LoopContext>)]
    /// The snapshot every loop was last sent, for readers outside the loops (`/clusters`).
    private let current: NIOLockedValueBox<RouteTable>

    init(
        group: EventLoopGroup, table: RouteTable, clientTLS: TLSContextStore?, tunnelTLS: TLSContextStore? = nil,
        http2TLS: TLSContextStore? = nil, metrics: SidecarMetrics = SidecarMetrics(), spanExport: SpanExport? = nil
    ) {
        let shared = SharedLimits()
        let responseCaches = GatewayResponseCaches()
        let connector = SocketUpstreamConnector(clientTLS: clientTLS, tunnelTLS: tunnelTLS, http2TLS: http2TLS)
        let loops = Array(group.makeIterator())
        // Each context is made on its own loop and stays there.
        let all = loops.map { loop in
            let context = try! loop.submit {
                NIOLoopBound(
                    LoopContext(
                        eventLoop: loop, table: table, connector: connector, metrics: metrics, shared: shared,
                        spanExport: spanExport, responseCaches: responseCaches),
                    eventLoop: loop)
            }.wait()
            return (eventLoop: loop, context: context)
        }
        for entry in all {
            let siblings = all.filter { $0.eventLoop !== entry.eventLoop }
            try! entry.eventLoop.submit { entry.context.value.join(siblings, loopCount: all.count) }.wait()
        }
        self.contexts = Dictionary(uniqueKeysWithValues: all.map { (ObjectIdentifier($0.eventLoop), $0.context) })
        self.all = all
        self.current = NIOLockedValueBox(table)
        self.shared = shared
        self.metrics = metrics
        publishEndpoints(table)
    }

    private let shared: SharedLimits
    private let metrics: SidecarMetrics

    /// `sidecar_endpoints`: the snapshot's healthy endpoints less those ejected on some loop.
    private func publishEndpoints(_ table: RouteTable) {
        for destination in table.destinations.values {
            shared.ejections.setEndpoints(service: destination.service, destination.endpoints.map(\.address), metrics: metrics)
        }
    }

    /// The context of `loop`; call it on that loop (a connection's initializer).
    func context(for loop: EventLoop) -> LoopContext {
        guard let context = contexts[ObjectIdentifier(loop)] else {
            preconditionFailure("event loop outside the sidecar's group")
        }
        return context.value
    }

    /// Installs a new route table on every loop.
    func replaceTable(_ table: RouteTable) {
        current.withLockedValue { $0 = table }
        publishEndpoints(table)
        for (loop, context) in all {
            loop.execute { context.value.replaceTable(table) }
        }
    }

    /// Writes every loop's pending access log lines (shutdown: nothing is lost).
    func flushAccessLogs() async {
        for (loop, context) in all {
            try? await loop.submit { context.value.accessLogBuffer.flush() }.get()
        }
    }

    /// Sends every loop's waiting spans and waits (at most `timeout`) for the exports to end
    /// (shutdown: spans finished before SIGTERM reach a collector that answers).
    func flushSpans(timeout: TimeAmount = .seconds(2)) async {
        let deadline = NIODeadline.now() + timeout
        for (loop, context) in all {
            let done = try? await loop.submit { () -> EventLoopFuture<Void> in
                let flushed = context.value.spans?.flush() ?? loop.makeSucceededVoidFuture()
                let timer = loop.makePromise(of: Void.self)
                loop.scheduleTask(deadline: deadline) { timer.succeed() }
                flushed.cascade(to: timer)
                return timer.futureResult
            }.get()
            try? await done?.get()
        }
    }

    /// Asks every connection to finish, then waits (bounded) until none is open.
    func drain(timeout: TimeAmount) async {
        for (loop, context) in all {
            try? await loop.submit { context.value.beginDrain() }.get()
        }
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline, !Task.isCancelled {
            var open = 0
            for (loop, context) in all {
                open += (try? await loop.submit { context.value.openConnections }.get()) ?? 0
            }
            if open == 0 { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// `/clusters`: every destination of the current table, its endpoints, labels and policy.
    /// Read from the first loop's table (every loop holds the same snapshot).
    func clustersJSON() -> String {
        let table = current.withLockedValue { $0 }
        var out = "{\"version\":\(table.version),\"clusters\":["
        let destinations = table.destinations.values.sorted { $0.service < $1.service }
        for (index, destination) in destinations.enumerated() {
            if index > 0 { out += "," }
            out += "{\"service\":"
            AccessLog.appendJSONString(destination.service, to: &out)
            out += ",\"loadBalancer\":\"\(destination.policy.loadBalancer.rawValue)\",\"endpoints\":["
            for (endpointIndex, endpoint) in destination.endpoints.enumerated() {
                if endpointIndex > 0 { out += "," }
                out += "{\"address\":"
                AccessLog.appendJSONString(endpoint.address.description, to: &out)
                out += ",\"state\":\"healthy\",\"labels\":{"
                for (labelIndex, (key, value)) in endpoint.labels.sorted(by: { $0.key < $1.key }).enumerated() {
                    if labelIndex > 0 { out += "," }
                    AccessLog.appendJSONString(key, to: &out)
                    out += ":"
                    AccessLog.appendJSONString(value, to: &out)
                }
                out += "}}"
            }
            out += "]}"
        }
        return out + "]}\n"
    }

    /// `/explain` (see `Explain`), from the worker loop the admin request runs on (the admin
    /// server shares the sidecar's event loop group). 400 with `{"error": …}` for a bad query.
    func explain(uri: String, certificateExpiry: Int64, gateway: Explain.Listeners? = nil) -> (ok: Bool, json: String) {
        let query: Explain.Query
        switch Explain.query(fromURI: uri) {
        case .success(let parsed): query = parsed
        case .failure(let error): return (false, ConfigValue.map([("error", .string(error.message))]).json + "\n")
        }
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop, let context = contexts[ObjectIdentifier(loop)] else {
            return (false, ConfigValue.map([("error", .string("explain runs on a worker loop of the sidecar"))]).json + "\n")
        }
        switch Explain.report(query, loop: context.value, certificateExpiry: certificateExpiry, gateway: gateway) {
        case .success(let report): return (true, report)
        case .failure(let error): return (false, ConfigValue.map([("error", .string(error.message))]).json + "\n")
        }
    }

    /// Open downstream connections and in-flight requests, for /clusters and tests.
    func snapshot() async -> (connections: Int, idleUpstreams: Int) {
        var connections = 0
        var idle = 0
        for (loop, context) in all {
            let (c, i) = (try? await loop.submit { (context.value.openConnections, context.value.pool.idleCount) }.get()) ?? (0, 0)
            connections += c
            idle += i
        }
        return (connections, idle)
    }
}

/// The port a listener actually bound (port 0 in tests), readable from any thread.
final class ListenerAddressBox: Sendable {
    private let port = NIOLockedValueBox<Int?>(nil)
    func set(_ value: Int) { port.withLockedValue { $0 = value } }
    var value: Int? { port.withLockedValue { $0 } }
}
