#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore
import Synchronization

/// An HTTPS client of the control-plane API over our TLS layer (ClientBootstrap + TLSHandler +
/// NIO's HTTP/1.1 client codec), verifying the server against the mesh CA. Used by the
/// operator CLI, the sidecar's dynamic mode and tests. One connection per request by default
/// (the CLI); with `keepAlive` (the sidecar) connections stay open between requests, so the
/// watch sent after a change (the acknowledgement) and every heartbeat skip the mTLS
/// handshake. New connections resume the last TLS session with the server.
///
/// The server must present exactly `spiffe://<trust-domain>/control-plane`: chaining to the
/// mesh CA is not enough, since every sidecar holds a leaf from that CA. The identity is
/// checked inside the handshake, and the request (token, CSR, heartbeat) is written only
/// after the handshake finished, so an impostor never receives a byte of it.
public struct MeshAPIClient: Sendable {
    public let host: String
    public let port: Int
    public let token: String?
    /// The identity the server must present.
    public let serverIdentity: SPIFFEID
    private let context: TLSContext
    private let group: any EventLoopGroup
    /// With `keepAlive`: connections kept open for the next request.
    private let idle: IdleConnections?

    public struct Response: Sendable {
        public var status: Int
        public var body: String
    }

    /// - Parameters:
    ///   - server: `https://host:port`.
    ///   - caPEM: the trust bundle the server's certificate must chain to.
    ///   - clientCertificate: a workload cert and key to authenticate with mTLS instead of a token.
    ///   - trustDomain: the mesh's; the server must present `spiffe://<trustDomain>/control-plane`.
    public init(
        server: String, caPEM: String, token: String?, clientCertificate: (certificatePEM: String, keyPEM: String)? = nil,
        trustDomain: String = SPIFFEID.defaultTrustDomain,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, keepAlive: Bool = false
    ) throws(MeshAPIClientError) {
        idle = keepAlive ? IdleConnections() : nil
        guard let components = URLComponents(string: server), components.scheme == "https",
            let host = components.host, !host.isEmpty
        else {
            throw MeshAPIClientError("server \"\(server)\" is not an https://host:port URL")
        }
        guard let serverIdentity = SPIFFEID.controlPlane(trustDomain: trustDomain) else {
            throw MeshAPIClientError("trust domain \"\(trustDomain)\" is not a valid SPIFFE trust domain")
        }
        self.serverIdentity = serverIdentity
        self.host = host
        self.port = components.port ?? 15010
        self.token = token
        self.group = group
        let configuration = TLSConfiguration(
            certificateChain: clientCertificate.map { .pem($0.certificatePEM, name: "client certificate") },
            privateKey: clientCertificate.map { .pem($0.keyPEM, name: "client key") },
            trustRoots: .pem(caPEM, name: "CA file"),
            certificateVerification: .fullVerification,
            peerIdentity: .exactly([serverIdentity]))
        do {
            context = try TLSContext(configuration: configuration, role: .client)
        } catch {
            throw MeshAPIClientError("\(error)")
        }
    }

    public func send(
        _ method: HTTPMethod, _ path: String, body: String? = nil, contentType: String = "application/json",
        timeout: TimeAmount = .seconds(60)
    ) async throws(MeshAPIClientError) -> Response {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        if let token { headers.add(name: "authorization", value: "Bearer \(token)") }
        let bodyBuffer = body.map { ByteBuffer(string: $0) }
        headers.add(name: "content-length", value: String(bodyBuffer?.readableBytes ?? 0))
        if body != nil { headers.add(name: "content-type", value: contentType) }
        if idle == nil { headers.add(name: "connection", value: "close") }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        // A kept-open connection the server has closed meanwhile (its idle timeout, a restart)
        // fails before any answer: the request then goes once more on a new connection.
        if let channel = idle?.take() {
            let promise = channel.eventLoop.makePromise(of: ResponseCollector.Answer.self)
            do {
                return try await exchange(head, body: bodyBuffer, on: channel, promise: promise, install: true, timeout: timeout)
            } catch let error where error.closedUnanswered {
                if Task.isCancelled { throw error }
            }
        }
        // One loop for the promise and the channel; the new connection's collector holds the
        // promise from the start, so a refused handshake fails it with the TLS error.
        let loop = group.next()
        let promise = loop.makePromise(of: ResponseCollector.Answer.self)
        let channel = try await connect(on: loop, answering: promise)
        return try await exchange(head, body: bodyBuffer, on: channel, promise: promise, install: false, timeout: timeout)
    }

    /// A new connection: TCP, then our TLS handler checking the server's identity.
    private func connect(
        on loop: any EventLoop, answering promise: EventLoopPromise<ResponseCollector.Answer>
    ) async throws(MeshAPIClientError) -> any Channel {
        let context = context
        let host = host
        let port = port
        do {
            return try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        // Resumption (keyed by address: SNI is not sent to an IP) spares a new
                        // connection the full handshake's signatures and chain checks.
                        try sync.addHandler(TLSHandler(
                            context: context, serverName: Self.isIPAddress(host) ? nil : host,
                            sessionKey: "control-plane@\(host):\(port)"))
                        try sync.addHTTPClientHandlers()
                        try sync.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw MeshAPIClientError("cannot connect to https://\(host):\(port): \(Self.describe(error))")
        }
    }

    /// One request and its answer on `channel` (`install`: a kept connection, whose collector
    /// is given the promise first); the channel goes back to the idle connections when both
    /// sides keep it open, else it is closed.
    private func exchange(
        _ head: HTTPRequestHead, body: ByteBuffer?, on channel: any Channel,
        promise: EventLoopPromise<ResponseCollector.Answer>, install: Bool, timeout: TimeAmount
    ) async throws(MeshAPIClientError) -> Response {
        let host = host, port = port
        // Queued in the TLS handler until the handshake (and so the server's identity) succeeded;
        // a refused handshake fails them unsent.
        channel.eventLoop.execute {
            if install {
                do {
                    let collector = try channel.pipeline.syncOperations.handler(type: ResponseCollector.self)
                    collector.expect(promise)
                    guard channel.isActive else { return }
                } catch {
                    // Closed since it was kept: its handlers are gone.
                    promise.fail(ResponseCollector.Failure(underlying: error, answered: false))
                    return
                }
            }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(MeshAPIClientError("no answer from https://\(host):\(port) within \(timeout)"))
        }
        defer { timer.cancel() }
        do {
            // A cancelled task (a sidecar shutting down mid long-poll) stops waiting at once.
            let answer = try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(CancellationError())
            }
            if let idle, answer.keepAlive, channel.isActive {
                idle.put(channel)
            } else {
                channel.close(promise: nil)
            }
            return answer.response
        } catch {
            channel.close(promise: nil)
            throw mapped(error)
        }
    }

    private func mapped(_ error: any Error) -> MeshAPIClientError {
        if let failure = error as? ResponseCollector.Failure {
            let inner = mapped(failure.underlying)
            return MeshAPIClientError(inner.description, kind: inner.kind, closedUnanswered: !failure.answered)
        }
        switch error {
        case is CancellationError:
            return MeshAPIClientError("request to https://\(host):\(port) cancelled")
        case let error as MeshAPIClientError:
            return error
        case let error as TLSError where error.reason == .identityMismatch || error.reason == .foreignTrustDomain:
            return MeshAPIClientError.wrongServerIdentity(
                server: "https://\(host):\(port)", expected: serverIdentity, presented: error.presentedIdentity)
        default:
            return MeshAPIClientError("request to https://\(host):\(port) failed: \(Self.describe(error))")
        }
    }

    private static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? TLSError { return error.description }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return describe(first.error)
        }
        if error is ChannelError { return "\(error)" }
        return "\(error)"
    }
}

/// Collects each HTTP response into the promise of the request in flight; a TLS error or an
/// early close fails it. One request at a time per connection.
private final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    struct Answer: Sendable {
        var response: MeshAPIClient.Response
        /// Neither side said `connection: close`: the connection can carry the next request.
        var keepAlive: Bool
    }

    private var promise: EventLoopPromise<Answer>?
    private var status = 0
    private var keepAlive = false
    private var sawHead = false
    private var closed = false
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<Answer>) { self.promise = promise }

    /// The promise of the next request; failed at once when the connection has already closed
    /// (its handlers linger for a moment after it went inactive).
    func expect(_ promise: EventLoopPromise<Answer>) {
        guard !closed else {
            promise.fail(Failure(underlying: MeshAPIClientError("the server closed the kept connection"), answered: false))
            return
        }
        self.promise = promise
        status = 0
        sawHead = false
        body.clear()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            keepAlive = head.isKeepAlive
            sawHead = true
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            let promise = self.promise
            self.promise = nil
            promise?.succeed(Answer(
                response: MeshAPIClient.Response(status: status, body: String(buffer: body)), keepAlive: keepAlive))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closed = true
        promise?.fail(Failure(underlying: error, answered: sawHead))
        promise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        promise?.fail(Failure(
            underlying: MeshAPIClientError("the server closed the connection before answering"), answered: sawHead))
        promise = nil
        context.fireChannelInactive()
    }

    /// The connection failed; `answered`: after the response had begun.
    struct Failure: Error {
        let underlying: any Error
        let answered: Bool
    }
}

/// A client's kept-open connections between requests (`keepAlive`), taken one per request;
/// closed when the client goes (a renewed certificate makes a new client).
final class IdleConnections: Sendable {
    private let channels = Mutex<[any Channel]>([])
    /// More than the sidecar's concurrent calls (watch, heartbeat, renewal).
    private let capacity = 4

    func take() -> (any Channel)? {
        channels.withLock { channels in
            while let channel = channels.popLast() {
                if channel.isActive { return channel }
            }
            return nil
        }
    }

    func put(_ channel: any Channel) {
        let kept = channels.withLock { channels -> Bool in
            guard channels.count < capacity else { return false }
            channels.append(channel)
            return true
        }
        if !kept { channel.close(promise: nil) }
    }

    deinit {
        for channel in channels.withLock({ $0 }) { channel.close(promise: nil) }
    }
}

public struct MeshAPIClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Unreachable, refused, timed out, an unreadable answer: `description` says which.
        case failed
        /// The server's certificate chains to the mesh CA but is not the control plane's (a
        /// workload's certificate, say): nothing was sent to it.
        case wrongServerIdentity(expected: SPIFFEID, presented: SPIFFEID?)
    }

    public let kind: Kind
    public let description: String
    /// A kept-open connection was closed before any answer (safe to send again on a new one).
    let closedUnanswered: Bool

    public init(_ description: String, kind: Kind = .failed) {
        self.init(description, kind: kind, closedUnanswered: false)
    }

    init(_ description: String, kind: Kind = .failed, closedUnanswered: Bool) {
        self.kind = kind
        self.description = description
        self.closedUnanswered = closedUnanswered
    }

    static func wrongServerIdentity(server: String, expected: SPIFFEID, presented: SPIFFEID?) -> MeshAPIClientError {
        let shown = presented?.description ?? "a certificate with no SPIFFE ID"
        return MeshAPIClientError(
            "\(server) is not the control plane: it presented \(shown), expected \(expected); nothing was sent to it",
            kind: .wrongServerIdentity(expected: expected, presented: presented))
    }
}
