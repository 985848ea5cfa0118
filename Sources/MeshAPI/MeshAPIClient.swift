import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// An HTTPS client of the control-plane API over our TLS layer (ClientBootstrap + TLSHandler +
/// NIO's HTTP/1.1 client codec), verifying the server against the mesh CA. Used by the
/// operator CLI, the sidecar's dynamic mode and tests. One connection per request: simple,
/// and neither makes many (a sidecar's long-poll watch holds one for up to 30 s).
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
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws(MeshAPIClientError) {
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
        // One loop for the promise and the channel: promises complete on their own loop.
        let loop = group.next()
        let promise = loop.makePromise(of: Response.self)
        let context = context
        let host = host
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(TLSHandler(context: context, serverName: Self.isIPAddress(host) ? nil : host))
                        try sync.addHTTPClientHandlers()
                        try sync.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw MeshAPIClientError("cannot connect to https://\(host):\(port): \(Self.describe(error))")
        }
        // Queued in the TLS handler until the handshake (and so the server's identity) succeeded;
        // a refused handshake fails them unsent.
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        if let token { headers.add(name: "authorization", value: "Bearer \(token)") }
        let bodyBuffer = body.map { ByteBuffer(string: $0) }
        headers.add(name: "content-length", value: String(bodyBuffer?.readableBytes ?? 0))
        if body != nil { headers.add(name: "content-type", value: contentType) }
        headers.add(name: "connection", value: "close")
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let bodyBuffer { channel.write(HTTPClientRequestPart.body(.byteBuffer(bodyBuffer)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(MeshAPIClientError("no answer from https://\(host):\(self.port) within \(timeout)"))
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        do {
            // A cancelled task (a sidecar shutting down mid long-poll) stops waiting at once.
            return try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(CancellationError())
            }
        } catch is CancellationError {
            throw MeshAPIClientError("request to https://\(host):\(port) cancelled")
        } catch let error as MeshAPIClientError {
            throw error
        } catch let error as TLSError where error.reason == .identityMismatch || error.reason == .foreignTrustDomain {
            throw MeshAPIClientError.wrongServerIdentity(
                server: "https://\(host):\(port)", expected: serverIdentity, presented: error.presentedIdentity)
        } catch {
            throw MeshAPIClientError("request to https://\(host):\(port) failed: \(Self.describe(error))")
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

/// Collects one HTTP response into the promise; a TLS error or early close fails it.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<MeshAPIClient.Response>
    private var status = 0
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<MeshAPIClient.Response>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            promise.succeed(MeshAPIClient.Response(status: status, body: String(buffer: body)))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(MeshAPIClientError("the server closed the connection before answering"))
        context.fireChannelInactive()
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

    public init(_ description: String, kind: Kind = .failed) {
        self.kind = kind
        self.description = description
    }

    static func wrongServerIdentity(server: String, expected: SPIFFEID, presented: SPIFFEID?) -> MeshAPIClientError {
        let shown = presented?.description ?? "a certificate with no SPIFFE ID"
        return MeshAPIClientError(
            "\(server) is not the control plane: it presented \(shown), expected \(expected); nothing was sent to it",
            kind: .wrongServerIdentity(expected: expected, presented: presented))
    }
}
