import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// A client of etcd v3 through its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
/// `/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/watch`): HTTP/1.1 over NIO, with TLS (and a
/// client certificate) through our OpenSSL layer when an endpoint is `https://`.
///
/// Unary calls reuse kept-alive connections (one call at a time each). Why the gateway and not gRPC: the gateway is the same etcd server API (the same Range, Txn,
/// Lease and Watch RPCs, the same revisions, compare semantics and watch guarantees: events
/// in revision order from `start_revision`, `compact_revision` when that revision is gone), so
/// nothing about watch semantics is lost; a watch is one streamed response of newline-separated
/// JSON messages. gRPC would need grpc-swift 2, swift-protobuf, HTTP/2 and swift-nio-ssl
/// (BoringSSL): minutes more of every 2-core CI build, and a second TLS stack beside the system
/// OpenSSL 3 the mesh is built on. What the gateway costs: JSON and base64 keys, and
/// HTTP/1.1 without multiplexing (a connection per concurrent call).
///
/// Endpoints are tried in order starting from the last one that answered; a refused or failed
/// connection moves to the next. A call that gets no answer within `requestTimeout` (an etcd
/// member without quorum holds writes until its own, longer, timeout) fails as `unavailable`.
/// Calls run on the client's own event loop; callers `await` them.
public final class EtcdClient: Sendable {
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var tls: Bool
        public var description: String { "\(tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    }

    /// TLS to etcd: the CA its members' certificates chain to, and our client certificate.
    public struct TLSFiles: Sendable, Equatable {
        public var caFile: String?
        public var certificateFile: String?
        public var keyFile: String?

        public init(caFile: String?, certificateFile: String?, keyFile: String?) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    public let endpoints: [Endpoint]
    public let requestTimeout: TimeAmount
    private let tlsContext: TLSContext?
    private let group: MultiThreadedEventLoopGroup
    /// Index of the endpoint to try first: the last one that answered.
    private let preferred = NIOLockedValueBox(0)
    /// Idle keep-alive connections per endpoint, each used by one call at a time.
    private let idle = NIOLockedValueBox<[Endpoint: [PooledConnection]]>([:])

    /// Parses `http://host:port,https://host:port,…`.
    public static func parseEndpoints(_ text: String) throws(EtcdError) -> [Endpoint] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw .invalid("no etcd endpoint given (http://host:2379,…)") }
        return try parts.map { part throws(EtcdError) in
            guard let components = URLComponents(string: part), let scheme = components.scheme,
                scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
                components.path.isEmpty || components.path == "/"
            else { throw .invalid("etcd endpoint \"\(part)\" is not an http://host:port or https://host:port URL") }
            return Endpoint(host: host, port: components.port ?? 2379, tls: scheme == "https")
        }
    }

    public init(endpoints: [Endpoint], tls: TLSFiles? = nil, requestTimeout: TimeAmount = .seconds(3)) throws(EtcdError) {
        guard !endpoints.isEmpty else { throw .invalid("no etcd endpoint given") }
        self.endpoints = endpoints
        self.requestTimeout = requestTimeout
        if endpoints.contains(where: \.tls) || tls?.caFile != nil {
            let certificate = tls?.certificateFile, key = tls?.keyFile
            guard (certificate == nil) == (key == nil) else {
                throw .invalid("--etcd-cert-file and --etcd-key-file go together")
            }
            // etcd's members present certificates for their host names or IPs, not SPIFFE IDs:
            // the chain to the given CA is what is checked.
            let configuration = TLSConfiguration(
                certificateChain: certificate.map { .file($0) }, privateKey: key.map { .file($0) },
                trustRoots: tls?.caFile.map { .file($0) }, minimumVersion: .tls12, maximumVersion: .tls13,
                alpnProtocols: ["http/1.1"],
                certificateVerification: tls?.caFile == nil ? .none : .fullVerification)
            do {
                tlsContext = try TLSContext(configuration: configuration, role: .client)
            } catch {
                throw .invalid("etcd TLS: \(error)")
            }
        } else {
            tlsContext = nil
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    deinit {
        group.shutdownGracefully { _ in }
    }

    public var endpointList: String { endpoints.map(\.description).joined(separator: ",") }

    // MARK: Unary calls

    /// POSTs `body` (JSON) to `path` and decodes the answer. The I/O runs on the client's event
    /// loop; the caller suspends meanwhile (no thread waits).
    public func call<Answer: Decodable & Sendable>(_ path: String, _ body: [String: Any], as: Answer.Type) async throws(EtcdError) -> Answer {
        let data = try Self.encode(path, body)
        let raw: Data
        do {
            raw = try await call(path, body: data).get()
        } catch {
            throw Self.unavailable(error)
        }
        return try Self.decode(path, raw, as: Answer.self)
    }

    private static func encode(_ path: String, _ body: [String: Any]) throws(EtcdError) -> Data {
        do {
            return try JSONSerialization.data(withJSONObject: body)
        } catch {
            throw .invalid("cannot encode a request to \(path): \(error)")
        }
    }

    private static func unavailable(_ error: any Error) -> EtcdError {
        error as? EtcdError ?? .unavailable("\(error)")
    }

    private static func decode<Answer: Decodable>(_ path: String, _ raw: Data, as: Answer.Type) throws(EtcdError) -> Answer {
        do {
            return try JSONDecoder().decode(Answer.self, from: raw)
        } catch {
            throw .failed("etcd answered \(path) with what is not its JSON: \(String(decoding: raw.prefix(200), as: UTF8.self))")
        }
    }

    /// Tries each endpoint once, from the preferred one, until one answers.
    private func call(_ path: String, body: Data) -> EventLoopFuture<Data> {
        let loop = group.next()
        let start = preferred.withLockedValue { $0 }
        let promise = loop.makePromise(of: Data.self)
        @Sendable func attempt(_ offset: Int, failures: [String]) {
            guard offset < endpoints.count else {
                promise.fail(EtcdError.unavailable("no etcd endpoint answered: " + failures.joined(separator: "; ")))
                return
            }
            let index = (start + offset) % endpoints.count
            let endpoint = endpoints[index]
            exchange(endpoint, path: path, body: body, on: loop).whenComplete { result in
                switch result {
                case .success(let (status, answer)):
                    if status == 200 {
                        self.preferred.withLockedValue { $0 = index }
                        promise.succeed(answer)
                        return
                    }
                    let error = EtcdError.answer(status: status, body: answer)
                    if case .unavailable(let why) = error {
                        attempt(offset + 1, failures: failures + ["\(endpoint): \(why)"])
                    } else {
                        promise.fail(error)
                    }
                case .failure(let error):
                    attempt(offset + 1, failures: failures + ["\(endpoint): \(Self.describe(error))"])
                }
            }
        }
        attempt(0, failures: [])
        return promise.futureResult
    }

    /// One request on a kept-alive connection to `endpoint` (an idle one, or a new one); the
    /// status and the whole body. A reused connection that fails before answering (etcd closed
    /// it while idle) is retried once on a new connection.
    private func exchange(_ endpoint: Endpoint, path: String, body: Data, on loop: any EventLoop) -> EventLoopFuture<(Int, Data)> {
        let promise = loop.makePromise(of: (Int, Data).self)
        let timeout = requestTimeout
        @Sendable func run(_ connection: PooledConnection, reused: Bool) {
            let attempt = connection.channel.eventLoop.makePromise(of: (Int, Data, Bool).self)
            let timer = connection.channel.eventLoop.scheduleTask(in: timeout) {
                attempt.fail(EtcdError.unavailable("no answer within \(timeout.nanoseconds / 1_000_000) ms"))
            }
            connection.channel.eventLoop.execute {
                connection.handler.begin(attempt)
                Self.send(path: path, body: body, endpoint: endpoint, keepAlive: true, on: connection.channel)
            }
            attempt.futureResult.whenComplete { result in
                timer.cancel()
                switch result {
                case .success(let (status, answer, keepOpen)):
                    if keepOpen { self.idle.withLockedValue { $0[endpoint, default: []].append(connection) } } else {
                        connection.channel.close(promise: nil)
                    }
                    promise.succeed((status, answer))
                case .failure(let error):
                    connection.channel.close(promise: nil)
                    if reused, connection.handler.answeredNothing {
                        fresh()
                    } else {
                        promise.fail(error)
                    }
                }
            }
        }
        @Sendable func fresh() {
            let handler = UnaryResponseHandler()
            connect(endpoint, on: loop) { handler }.whenComplete { result in
                switch result {
                case .failure(let error): promise.fail(error)
                case .success(let channel): run(PooledConnection(channel: channel, handler: handler), reused: false)
                }
            }
        }
        let reusable = idle.withLockedValue { pool -> PooledConnection? in
            while let connection = pool[endpoint]?.popLast() {
                if connection.channel.isActive { return connection }
            }
            return nil
        }
        if let reusable { run(reusable, reused: true) } else { fresh() }
        return promise.futureResult
    }

    private func connect(
        _ endpoint: Endpoint, on loop: any EventLoop, handler: @escaping @Sendable () -> any ChannelHandler & Sendable
    ) -> EventLoopFuture<any Channel> {
        let context = endpoint.tls ? tlsContext : nil
        return ClientBootstrap(group: loop)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let context {
                        let isIP = endpoint.host.contains(":") || endpoint.host.allSatisfy { $0.isNumber || $0 == "." }
                        try sync.addHandler(TLSHandler(context: context, serverName: isIP ? nil : endpoint.host))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(handler())
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
    }

    private static func send(path: String, body: Data, endpoint: Endpoint, keepAlive: Bool, on channel: any Channel) {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(endpoint.host):\(endpoint.port)")
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.count))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    // MARK: Watch

    /// The client's event loop: what the store's watch and its timers run on, apart from Swift's
    /// cooperative pool.
    public var eventLoop: any EventLoop { group.next() }

    /// Unary call as a future on the client's loop (the raw JSON answer).
    public func callFuture(_ path: String, _ body: [String: Any]) -> EventLoopFuture<Data> {
        do {
            return call(path, body: try JSONSerialization.data(withJSONObject: body))
        } catch {
            return group.next().makeFailedFuture(EtcdError.invalid("cannot encode a request to \(path): \(error)"))
        }
    }

    /// Opens `/v3/watch` for `[key, rangeEnd)` from `startRevision` on the first endpoint that
    /// accepts a connection, and calls `onMessage` with each streamed message (on the client's
    /// event loop, in order). The stream's `ended` completes when the stream ends (the member
    /// went away, or `cancel` closed it); the future fails if no endpoint could be reached.
    public func watch(
        key: String, rangeEnd: String, startRevision: Int64, onMessage: @escaping @Sendable (EtcdWatchMessage) -> Void
    ) -> EventLoopFuture<EtcdWatchStream> {
        let request: [String: Any] = [
            "create_request": [
                "key": Data(key.utf8).base64EncodedString(), "range_end": Data(rangeEnd.utf8).base64EncodedString(),
                "start_revision": String(startRevision), "progress_notify": true,
            ]
        ]
        let loop = group.next()
        let body: Data
        do { body = try JSONSerialization.data(withJSONObject: request) } catch {
            return loop.makeFailedFuture(EtcdError.invalid("\(error)"))
        }
        let start = preferred.withLockedValue { $0 }
        let promise = loop.makePromise(of: EtcdWatchStream.self)
        @Sendable func attempt(_ offset: Int, failures: [String]) {
            guard offset < endpoints.count else {
                promise.fail(EtcdError.unavailable("no etcd endpoint accepted a watch: " + failures.joined(separator: "; ")))
                return
            }
            let endpoint = endpoints[(start + offset) % endpoints.count]
            let ended = loop.makePromise(of: Void.self)
            connect(endpoint, on: loop) { WatchStreamHandler(onMessage: onMessage, ended: ended) }.whenComplete { result in
                switch result {
                case .success(let channel):
                    Self.send(path: "/v3/watch", body: body, endpoint: endpoint, keepAlive: true, on: channel)
                    promise.succeed(EtcdWatchStream(channel: channel, ended: ended.futureResult, endpoint: endpoint))
                case .failure(let error):
                    ended.succeed(())
                    attempt(offset + 1, failures: failures + ["\(endpoint): \(Self.describe(error))"])
                }
            }
        }
        attempt(0, failures: [])
        return promise.futureResult
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? EtcdError { return error.description }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first { return describe(first.error) }
        return "\(error)"
    }
}

/// An open watch: `ended` completes when etcd or the network closes it; `cancel` closes it.
public struct EtcdWatchStream: Sendable {
    let channel: any Channel
    public let ended: EventLoopFuture<Void>
    public let endpoint: EtcdClient.Endpoint

    public func cancel() {
        channel.close(promise: nil)
    }
}

/// A kept-alive connection and the handler that collects its answers.
private struct PooledConnection: Sendable {
    let channel: any Channel
    let handler: UnaryResponseHandler
}

/// Collects one response (status, body, whether the connection stays open) per `begin`, on a
/// connection that serves one request at a time. Touched only on the channel's event loop.
private final class UnaryResponseHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private var promise: EventLoopPromise<(Int, Data, Bool)>?
    private var status = 0
    private var keepOpen = true
    private var body = ByteBuffer()
    /// No byte of the current answer arrived. On a reused connection that is almost always
    /// etcd having closed it while idle, so the call is sent again on a new connection. (Had
    /// etcd applied it and died before answering, a resend is a put of the same value, or a
    /// txn whose compare now fails and is read as a conflict.)
    private(set) var answeredNothing = true

    func begin(_ promise: EventLoopPromise<(Int, Data, Bool)>) {
        self.promise = promise
        status = 0
        keepOpen = true
        body.clear()
        answeredNothing = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        answeredNothing = false
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            keepOpen = head.isKeepAlive
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            let answer = (status, Data(body.readableBytesView), keepOpen)
            let promise = self.promise
            self.promise = nil
            promise?.succeed(answer)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(EtcdError.unavailable("etcd closed the connection before answering"))
        promise = nil
        context.fireChannelInactive()
    }
}

/// Splits a streamed watch response into its newline-separated JSON messages.
private final class WatchStreamHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private let onMessage: @Sendable (EtcdWatchMessage) -> Void
    private let ended: EventLoopPromise<Void>
    private var pending = ByteBuffer()
    private var status = 0

    init(onMessage: @escaping @Sendable (EtcdWatchMessage) -> Void, ended: EventLoopPromise<Void>) {
        self.onMessage = onMessage
        self.ended = ended
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(var chunk):
            guard status == 200 else { return }
            pending.writeBuffer(&chunk)
            while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                let length = newline - pending.readerIndex
                let line = pending.readSlice(length: length)!
                pending.moveReaderIndex(forwardBy: 1)
                guard line.readableBytes > 0 else { continue }
                guard let message = try? JSONDecoder().decode(EtcdWatchEnvelope.self, from: Data(line.readableBytesView)) else {
                    context.close(promise: nil)
                    return
                }
                if let result = message.result { onMessage(result) } else { context.close(promise: nil) }
            }
            pending.discardReadBytes()
        case .end:
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended.succeed(())
        context.fireChannelInactive()
    }
}

/// What an etcd call failed with.
public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No member answered in time, or the one that did has no quorum: try again later.
    case unavailable(String)
    /// etcd refused the request (a bug or a misconfiguration here, not an outage).
    case failed(String)
    /// Bad configuration (endpoints, TLS files).
    case invalid(String)

    public var description: String {
        switch self {
        case .unavailable(let message), .failed(let message), .invalid(let message): message
        }
    }

    /// The gateway's error body: `{"error": "...", "code": <gRPC code>}`.
    static func answer(status: Int, body: Data) -> EtcdError {
        struct Body: Decodable {
            var error: String?
            var message: String?
            var code: Int?
        }
        let decoded = try? JSONDecoder().decode(Body.self, from: body)
        let message = decoded?.message ?? decoded?.error ?? String(decoding: body.prefix(200), as: UTF8.self)
        // UNAVAILABLE (14), DEADLINE_EXCEEDED (4), ABORTED (10), or the gateway's own 503/504:
        // no leader, no quorum, a member shutting down.
        switch decoded?.code {
        case 4, 10, 14: return .unavailable("etcd: \(message)")
        default: break
        }
        if status == 503 || status == 504 || message.contains("no leader") || message.contains("timed out") {
            return .unavailable("etcd: \(message)")
        }
        return .failed("etcd answered \(status): \(message)")
    }
}
