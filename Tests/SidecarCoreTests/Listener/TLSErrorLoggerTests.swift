import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// `TLSErrorLogger` counts a refused handshake by its reason and passes the error on, and leaves
/// the pipeline once the handshake completed (the connection's requests do not pass through it).
@Suite struct TLSErrorLoggerTests {
    @Test func countsARefusedHandshakeAndLeavesOnceAHandshakeCompleted() throws {
        let metrics = SidecarMetrics()
        let refused = EmbeddedChannel()
        try refused.pipeline.syncOperations.addHandler(
            TLSErrorLogger(logger: Logger(label: "test"), metrics: metrics, direction: .gateway))
        refused.pipeline.fireErrorCaught(TLSError(.notTLS, "plain bytes"))
        #expect(metrics.tlsHandshakeErrors(.gateway, .notTLS).value == 1)
        #expect(throws: TLSError.self) { try refused.throwIfErrorCaught() }

        let accepted = EmbeddedChannel()
        try accepted.pipeline.syncOperations.addHandler(TLSErrorLogger(logger: Logger(label: "test"), metrics: metrics))
        let info = TLSHandshakeInfo(
            peerIdentity: nil, negotiatedProtocol: "http/1.1", serverName: "api.example.com", resumed: false,
            protocolVersion: "TLSv1.3", peerCertificateNotAfter: nil)
        accepted.pipeline.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(info))
        #expect((try? accepted.pipeline.syncOperations.handler(type: TLSErrorLogger.self)) == nil)
    }
}
