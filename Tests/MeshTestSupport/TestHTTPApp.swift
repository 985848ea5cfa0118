import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny app server (NIOHTTP1) standing in for a service behind its sidecar. It answers every
/// request with what it saw — method, path, `x-mesh-caller`, request id, body size, a
/// checksum, and the gateway's `x-mesh-user` and `x-tier` — so tests can assert what crossed the mesh. `/slow?ms=N` answers after N ms;
/// `/status/N` answers with status N; `/bytes?n=N` streams N bytes, only as fast as the
/// connection takes them (a large download for flow-control tests). Each request header
/// `x-respond-with: name: value` becomes a response header (cache tests), and a request whose
/// `If-None-Match` / `If-Modified-Since` equals the `etag` / `last-modified` so chosen is answered
/// 304 without a body (counted in `notModified`: revalidation tests); a path under `/json`
/// is answered `{"app":NAME,"path":TARGET}` as `application/json` (aggregation tests). It also counts requests, connections and request-body
/// bytes, and can be made slow as a whole (`delay`).
public final class TestHTTPApp: Sendable {
    public let name: String
    public let port: Int
    private let channel: Channel
    private let counters = NIOLockedValueBox(AppCounters())

    /// - Parameter alwaysStatus: answer every request with this status (a broken instance).
    /// - Parameter failEvery: answer every Nth request with 503 (a flaky instance).
    /// - Parameter delay: answer every request this many milliseconds late (a slow instance).
    public init(
        name: String, alwaysStatus: Int? = nil, failEvery: Int? = nil, delay: Int64? = nil,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws {
        self.name = name
        let counters = self.counters
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counters.withLockedValue { $0.connections += 1 }
                return channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(AppHandler(
                        name: name, counters: counters, alwaysStatus: alwaysStatus, failEvery: failEvery, delay: delay))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    public var requests: Int { counters.withLockedValue { $0.requests } }
    /// Conditional requests answered 304.
    public var notModified: Int { counters.withLockedValue { $0.notModified } }
    /// The most requests the app was answering at once (slow ones overlap).
    public var maxInFlight: Int { counters.withLockedValue { $0.maxInFlight } }
    public var connections: Int { counters.withLockedValue { $0.connections } }
    /// Request-body bytes of every complete request so far.
    public var bodyBytes: Int { counters.withLockedValue { $0.bodyBytes } }

    public func close() async throws { try await channel.close() }
}

struct AppCounters: Sendable {
    var requests = 0
    var notModified = 0
    var connections = 0
    var bodyBytes = 0
    var inFlight = 0
    var maxInFlight = 0
}

private final class AppHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let name: String
    let counters: NIOLockedValueBox<AppCounters>
    var head: HTTPRequestHead?
    var bodyBytes = 0
    var checksum: UInt32 = 0
    let alwaysStatus: Int?
    let failEvery: Int?
    let delay: Int64?

    init(
        name: String, counters: NIOLockedValueBox<AppCounters>, alwaysStatus: Int?, failEvery: Int?, delay: Int64?
    ) {
        self.name = name
        self.counters = counters
        self.alwaysStatus = alwaysStatus
        self.failEvery = failEvery
        self.delay = delay
    }

    /// `/bytes`: what is still to be written of the download.
    var streamRemaining = 0
    static let chunk = ByteBuffer(repeating: UInt8(ascii: "b"), count: 64 * 1024)

    /// Writes the download while the connection is writable; resumes when it is again.
    func pump(context: ChannelHandlerContext) {
        while streamRemaining > 0 && context.channel.isWritable {
            let size = min(streamRemaining, Self.chunk.readableBytes)
            streamRemaining -= size
            context.write(wrapOutboundOut(.body(.byteBuffer(Self.chunk.getSlice(at: 0, length: size)!))), promise: nil)
            if streamRemaining == 0 { context.write(wrapOutboundOut(.end(nil)), promise: nil) }
        }
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if streamRemaining > 0 { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
            checksum = 0
        case .body(let body):
            bodyBytes += body.readableBytes
            checksum = body.withUnsafeReadableBytes { raw in
                var sum = checksum
                for byte in raw { sum = sum &* 31 &+ UInt32(byte) }
                return sum
            }
        case .end:
            guard let head else { return }
            let bodyBytes = self.bodyBytes
            let count = counters.withLockedValue { counters -> Int in
                counters.requests += 1
                counters.bodyBytes += bodyBytes
                counters.inFlight += 1
                counters.maxInFlight = max(counters.maxInFlight, counters.inFlight)
                return counters.requests
            }
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            var status = HTTPResponseStatus.ok
            var delay: Int64 = self.delay ?? 0
            if path.contains("/slow"), let ms = head.uri.split(separator: "=").last.flatMap({ Int64($0) }) {
                delay = ms
            }
            if path == "/bytes", let n = head.uri.split(separator: "=").last.flatMap({ Int($0) }) {
                counters.withLockedValue { $0.inFlight -= 1 }
                let headers = HTTPHeaders([("content-length", "\(n)"), ("x-app", name)])
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
                streamRemaining = n
                pump(context: context)
                self.head = nil
                return
            }
            if path.hasPrefix("/status/"), let code = Int(path.dropFirst(8)) {
                status = HTTPResponseStatus(statusCode: code)
            }
            if let alwaysStatus { status = HTTPResponseStatus(statusCode: alwaysStatus) }
            if let failEvery, count % failEvery == 0 { status = .serviceUnavailable }
            let json = path.hasPrefix("/json")
            let body = json ? "{\"app\":\"\(name)\",\"path\":\"\(head.uri)\"}" : """
                app=\(name) method=\(head.method.rawValue) path=\(head.uri) \
                caller=\(head.headers["x-mesh-caller"].joined(separator: ",")) \
                request-id=\(head.headers["x-request-id"].first ?? "") \
                traceparent=\(head.headers["traceparent"].first ?? "no") \
                body-bytes=\(bodyBytes) checksum=\(checksum) \
                user=\(head.headers["x-mesh-user"].joined(separator: ",")) \
                tier=\(head.headers["x-tier"].joined(separator: ","))
                """
            let keepAlive = head.isKeepAlive
            let counters = self.counters
            let respond = {
                counters.withLockedValue { $0.inFlight -= 1 }
                var headers = HTTPHeaders([("content-length", "\(body.utf8.count)"), ("x-app", self.name)])
                if json { headers.add(name: "content-type", value: "application/json") }
                for line in head.headers["x-respond-with"] {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers.add(name: String(line[..<colon]), value: String(line[line.index(after: colon)...].drop { $0 == " " }))
                }
                if !keepAlive { headers.add(name: "connection", value: "close") }
                var status = status
                let validators = [("if-none-match", "etag"), ("if-modified-since", "last-modified")]
                let unchanged = status == .ok && validators.contains { asked, sent in
                    guard let value = head.headers.first(name: asked) else { return false }
                    return headers[sent].contains(value)
                }
                if unchanged {
                    counters.withLockedValue { $0.notModified += 1 }
                    headers.remove(name: "content-length")
                    status = .notModified
                }
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                if !unchanged { context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil) }
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
            }
            if delay > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(delay)) { respond() }
            } else {
                respond()
            }
            self.head = nil
        }
    }
}
