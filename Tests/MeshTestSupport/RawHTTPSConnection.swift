import NIOCore
import NIOPosix
import SidecarCore

/// A TLS connection that writes whatever bytes a test wants (a head announcing a body it never
/// sends, half a body) and records what comes back, for tests of an HTTPS server's limits.
public struct RawHTTPSConnection: Sendable {
    public let channel: any Channel
    public let recorder: SharedRecorder

    /// Connects to 127.0.0.1:`port`, verifying the server against `caPEM` (optionally presenting
    /// a client certificate).
    public static func connect(
        port: Int, caPEM: String, clientCertificate: (certificatePEM: String, keyPEM: String)? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RawHTTPSConnection {
        let configuration = TLSConfiguration(
            certificateChain: clientCertificate.map { .pem($0.certificatePEM, name: "client certificate") },
            privateKey: clientCertificate.map { .pem($0.keyPEM, name: "client key") },
            trustRoots: .pem(caPEM, name: "CA"), certificateVerification: .fullVerification, peerIdentity: .any)
        let context = try TLSContext(configuration: configuration, role: .client)
        let (channel, recorder) = try await connectTLSClient(group: group, port: port, context: context, serverName: nil)
        return RawHTTPSConnection(channel: channel, recorder: recorder)
    }

    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Everything received so far.
    public var received: String { recorder.received }

    /// The status code of the first response, once its status line is in.
    public var status: Int? {
        let text = received
        guard text.hasPrefix("HTTP/1.1 "), text.count >= 12 else { return nil }
        return Int(text.dropFirst(9).prefix(3))
    }

    /// Whether the server closed the connection.
    public var isClosed: Bool { recorder.closed || !channel.isActive }

    public func close() {
        channel.close(promise: nil)
    }
}
