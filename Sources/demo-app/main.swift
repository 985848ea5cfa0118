import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A tiny service for the demo mesh (scripts/demo.sh), in one of two modes:
///
/// - `demo-app NAME HOST:PORT [--call SERVICE/PATH --via HOST:PORT]` answers every request with
///   a JSON line naming itself, the path and the caller the mesh vouched for (`x-mesh-caller`).
///   With `--call` it first calls SERVICE/PATH through its sidecar's outbound port (`--via`,
///   `Host: SERVICE`) and fails with 502 when that call does not answer 2xx, so a fault deep
///   in the call chain shows in every caller's success rate.
/// - `demo-app load --call SERVICE/PATH --via HOST:PORT [--rps 5] [--concurrency 8]` is the
///   demo's load generator: a steady request rate through a sidecar, never more than
///   `--concurrency` in flight (a slow mesh lowers the rate instead of piling up requests),
///   with one summary line every 10 s.
let usage = """
    usage: demo-app NAME HOST:PORT [--call SERVICE/PATH --via HOST:PORT]
           demo-app load --call SERVICE/PATH --via HOST:PORT [--rps N] [--concurrency N]
    """

/// Where a call goes: a mesh service and path, through a local sidecar's outbound port.
struct Downstream: Sendable {
    var service: String
    var path: String
    var viaHost: String
    var viaPort: Int
}

/// One line on stdout at once (print's buffer would hold it back when stdout is a log file).
func say(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in _ = write(1, bytes.baseAddress, bytes.count) }
}

func fail(_ message: String) -> Never {
    say("demo-app: \(message)\n\(usage)")
    exit(2)
}

func hostPort(_ text: String) -> (String, Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
    return (String(text[..<colon]), port)
}

/// `--name value` options after the positional arguments.
func options(_ arguments: ArraySlice<String>) -> [String: String] {
    var result: [String: String] = [:]
    var index = arguments.startIndex
    while index < arguments.endIndex {
        guard arguments[index].hasPrefix("--"), index + 1 < arguments.endIndex else { fail("unexpected \(arguments[index])") }
        result[String(arguments[index].dropFirst(2))] = arguments[index + 1]
        index += 2
    }
    return result
}

func downstream(_ options: [String: String]) -> Downstream? {
    guard let call = options["call"] else { return nil }
    guard let via = options["via"].flatMap(hostPort) else { fail("--call needs --via HOST:PORT (the sidecar's outbound)") }
    let slash = call.firstIndex(of: "/") ?? call.endIndex
    let path = slash == call.endIndex ? "/" : String(call[slash...])
    return Downstream(service: String(call[..<slash]), path: path, viaHost: via.0, viaPort: via.1)
}

/// A promise completed at most once (answer, closed connection, failed connect or timer,
/// whichever comes first); touched only on its event loop.
final class OneAnswer: @unchecked Sendable {
    private let promise: EventLoopPromise<Int?>
    private var done = false
    init(_ promise: EventLoopPromise<Int?>) { self.promise = promise }
    var futureResult: EventLoopFuture<Int?> { promise.futureResult }

    func succeed(_ status: Int?) {
        promise.futureResult.eventLoop.preconditionInEventLoop()
        guard !done else { return }
        done = true
        promise.succeed(status)
    }
}

/// One GET through the sidecar on a fresh connection; the status, or nil when no answer came.
func call(_ downstream: Downstream, on loop: any EventLoop, caller: String) -> EventLoopFuture<Int?> {
    let promise = OneAnswer(loop.makePromise(of: Int?.self))
    ClientBootstrap(group: loop)
        .connectTimeout(.seconds(2))
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(StatusCollector(promise: promise))
            }
        }
        .connect(host: downstream.viaHost, port: downstream.viaPort)
        .whenComplete { result in
            guard case .success(let channel) = result else { return promise.succeed(nil) }
            let headers = HTTPHeaders([("host", downstream.service), ("user-agent", "demo-app/\(caller)"), ("connection", "close")])
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: downstream.path, headers: headers)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            // A route timeout in the mesh answers 504 well before this.
            let timer = loop.scheduleTask(in: .seconds(20)) { promise.succeed(nil) }
            promise.futureResult.whenComplete { _ in
                timer.cancel()
                channel.close(promise: nil)
            }
        }
    return promise.futureResult
}

/// Completes its promise with the response status once the response ended (nil if the
/// connection closed first).
final class StatusCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let promise: OneAnswer
    var status: Int?
    init(promise: OneAnswer) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body: break
        case .end: promise.succeed(status)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed(nil)  // ignored after the answer
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// The service: answers each request, after its downstream call when it has one.
final class DemoHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let name: String
    let downstream: Downstream?
    private var request: HTTPRequestHead?

    init(name: String, downstream: Downstream?) {
        self.name = name
        self.downstream = downstream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            guard let downstream else { return respond(context: context, head: head, status: .ok, downstream: nil) }
            call(downstream, on: context.eventLoop, caller: name).assumeIsolated().whenSuccess { status in
                let ok = status.map { (200..<300).contains($0) } ?? false
                self.respond(context: context, head: head, status: ok ? .ok : .badGateway, downstream: status)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, downstream: Int?) {
        let caller = head.headers["x-mesh-caller"].first ?? ""
        var body = "{\"service\":\"\(name)\",\"method\":\"\(head.method.rawValue)\",\"path\":\"\(head.uri)\",\"caller\":\"\(caller)\""
        if let service = self.downstream?.service { body += ",\"\(service)\":\(downstream.map(String.init) ?? "null")" }
        body += "}\n"
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", "\(body.utf8.count)")])
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}

/// Counts of the load generator's answers, printed every 10 s.
final class LoadCounts: Sendable {
    private struct State {
        var inFlight = 0
        var byStatus: [String: Int] = [:]
    }
    private let state = Mutex(State())

    func start(limit: Int) -> Bool {
        state.withLock { state in
            guard state.inFlight < limit else { return false }
            state.inFlight += 1
            return true
        }
    }

    func finish(_ status: Int?) {
        state.withLock { state in
            state.inFlight -= 1
            state.byStatus[status.map(String.init) ?? "no-answer", default: 0] += 1
        }
    }

    func skipped() { state.withLock { $0.byStatus["skipped", default: 0] += 1 } }

    func takeSummary() -> String {
        state.withLock { state in
            defer { state.byStatus = [:] }
            return state.byStatus.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
    }
}

func runLoad(_ options: [String: String]) async -> Never {
    guard let target = downstream(options) else { fail("load needs --call SERVICE/PATH --via HOST:PORT") }
    let rps = options["rps"].flatMap(Double.init) ?? 5
    let concurrency = options["concurrency"].flatMap(Int.init) ?? 8
    guard rps > 0, rps <= 1000, concurrency > 0 else { fail("--rps must be in (0, 1000], --concurrency at least 1") }
    let group = MultiThreadedEventLoopGroup.singleton
    let counts = LoadCounts()
    say("demo-app load: \(rps) requests/s to \(target.service)\(target.path) via \(target.viaHost):\(target.viaPort), at most \(concurrency) in flight")
    let interval = Duration.nanoseconds(Int64(1e9 / rps))
    var next = ContinuousClock.now
    var lastSummary = next
    while true {
        if counts.start(limit: concurrency) {
            call(target, on: group.next(), caller: "load").whenSuccess { counts.finish($0) }
        } else {
            counts.skipped()
        }
        next += interval
        if next - lastSummary >= .seconds(10) {
            lastSummary = next
            say("demo-app load: last 10 s: \(counts.takeSummary())")
        }
        try? await Task.sleep(until: next, clock: .continuous)
    }
}

let arguments = CommandLine.arguments
if arguments.count >= 2, arguments[1] == "load" {
    await runLoad(options(arguments.dropFirst(2)))
}
guard arguments.count >= 3, let (host, port) = hostPort(arguments[2]) else { fail("expected NAME HOST:PORT") }
let name = arguments[1]
let target = downstream(options(arguments.dropFirst(3)))

let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(DemoHandler(name: name, downstream: target))
        }
    }
    .bind(host: host, port: port).get()
let calls = target.map { " (calls \($0.service)\($0.path) via \($0.viaHost):\($0.viaPort))" } ?? ""
say("demo-app \(name) listening on \(channel.localAddress.map { "\($0)" } ?? "?")\(calls)")
try await channel.closeFuture.get()
