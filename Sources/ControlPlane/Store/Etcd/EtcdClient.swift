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
/// Why the gateway and not gRPC: the gateway is the same etcd server API (the same Range, Txn,
/// Lease and Watch RPCs, the same revisions, compare semantics and watch guarantees: events
/// in revision order from `start_revision`, `compact_revision` when that revision is gone), so
/// nothing about watch semantics is lost; a watch is one streamed response of newline-separated
/// JSON messages. gRPC would need grpc-swift 2, swift-protobuf, HTTP/2 and swift-nio-ssl
/// (BoringSSL): minutes more of every 2-core CI build, and a second TLS stack beside the system
/// OpenSSL 3 the mesh is built on. What the gateway costs: one connection per unary call
/// (loopback or LAN: well under a millisecond to set up) and base64 keys.
///
/// Endpoints are tried in order starting from the last one that answered; a refused or failed
/// connection moves to the next. A call that gets no answer within `requestTimeout` (an etcd
/// member without quorum holds writes until its own, longer, timeout) fails as `unavailable`.
/// Calls run on the client's own event loop, so a synchronous caller may wait for them from
/// any other thread.
public final class EtcdClient: Sendable {
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
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

    /// POSTs `body` (JSON) to `path` and decodes the answer; waits on the calling thread.
    public func callSync<Answer: Decodable>(_ path: String, _ body: [String: Any], as: Answer.Type) throws(EtcdError) -> Answer {
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: body)
        } catch {
            throw .invalid("cannot encode a request to \(path): \(error)")
        }
        let raw: Data
        do {
            raw = try call(path, body: data).wait()
        } catch let error as EtcdError {
            throw error
        } catch {
            throw .unavailable("\(error)")
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: raw)
        } catch {
            throw .failed("etcd answered \(path) with what is not its JSON: \(String(decoding: raw.prefix(200), as: UTF8.self))")
        }
    }

    public func call<Answer: Decodable & Sendable>(_ path: String, _ body: [String: Any], as: Answer.Type) async throws(EtcdError) -> Answer {
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: body)
        } catch {
            throw .invalid("cannot encode a request to \(path): \(error)")
        }
        let raw: Data
        do {
            raw = try await call(path, body: data).get()
        } catch let error as EtcdError {
            throw error
        } catch {
            throw .unavailable("\(error)")
        }
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

    /// One request on its own connection; the status and the whole body.
    private func exchange(_ endpoint: Endpoint, path: String, body: Data, on loop: any EventLoop) -> EventLoopFuture<(Int, Data)> {
        let promise = loop.makePromise(of: (Int, Data).self)
        let timeout = requestTimeout
        connect(endpoint, on: loop) { ResponseCollector(promise: promise) }.whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let channel):
                let timer = loop.scheduleTask(in: timeout) {
                    promise.fail(EtcdError.unavailable("no answer within \(timeout.nanoseconds / 1_000_000) ms"))
                }
                promise.futureResult.whenComplete { _ in
                    timer.cancel()
                    channel.close(promise: nil)
                }
                Self.send(path: path, body: body, endpoint: endpoint, keepAlive: false, on: channel)
            }
        }
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

    /// Opens `/v3/watch` for `[key, rangeEnd)` from `startRevision` on the first endpoint that
    /// accepts a connection, and calls `onMessage` with each streamed message (on the client's
    /// event loop, in order). Completes when the stream ends (the member went away, or
    /// `cancel` closed it); fails if no endpoint could be reached.
    public func watch(
        key: String, rangeEnd: String, startRevision: Int64, onMessage: @escaping @Sendable (EtcdWatchMessage) -> Void
    ) async throws(EtcdError) -> EtcdWatchStream {
        let request: [String: Any] = [
            "create_request": [
                "key": Data(key.utf8).base64EncodedString(), "range_end": Data(rangeEnd.utf8).base64EncodedString(),
                "start_revision": String(startRevision), "progress_notify": true,
            ]
        ]
        let body: Data
        do { body = try JSONSerialization.data(withJSONObject: request) } catch { throw .invalid("\(error)") }
        let start = preferred.withLockedValue { $0 }
        var failures: [String] = []
        for offset in 0..<endpoints.count {
            let index = (start + offset) % endpoints.count
            let endpoint = endpoints[index]
            let loop = group.next()
            let ended = loop.makePromise(of: Void.self)
            do {
                let channel = try await connect(endpoint, on: loop) { WatchStreamHandler(onMessage: onMessage, ended: ended) }.get()
                Self.send(path: "/v3/watch", body: body, endpoint: endpoint, keepAlive: true, on: channel)
                return EtcdWatchStream(channel: channel, ended: ended.futureResult, endpoint: endpoint)
            } catch {
                ended.fail(error)
                failures.append("\(endpoint): \(Self.describe(error))")
            }
        }
        throw .unavailable("no etcd endpoint accepted a watch: " + failures.joined(separator: "; "))
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

/// Collects one response (status and body) for a unary call.
private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<(Int, Data)>
    private var status = 0
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<(Int, Data)>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var chunk): body.writeBuffer(&chunk)
        case .end: promise.succeed((status, Data(body.readableBytesView)))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(EtcdError.unavailable("etcd closed the connection before answering"))
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
