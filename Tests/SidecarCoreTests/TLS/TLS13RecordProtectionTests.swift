import COpenSSL
import Foundation
import MeshTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// `TLS13RecordProtection` against OpenSSL's own record layer on a real TLS 1.3 handshake
/// between two `TLSHandler`s: the client's traffic secret comes from OpenSSL's key log, a record
/// the client's OpenSSL wrote is opened here, and records sealed here are read by the server's
/// OpenSSL. Both AES-GCM suites.
@Suite struct TLS13RecordProtectionTests {
    static let pki = TestPKI()
    static let web = pki.issue(service: "web")
    static let payments = pki.issue(service: "payments")

    /// A pair whose client logs its secrets (the key log is per `SSL_CTX`), and the client's
    /// application traffic secret once the handshake is done.
    func handshake(suite: TLS13RecordProtection.Suite) throws -> (InMemoryTLSPair, [UInt8]) {
        let clientContext = try TLSContext(configuration: openSSLRecordLayer(Self.web.configuration()), role: .client)
        let name = suite == .aes128GCMSHA256 ? "TLS_AES_128_GCM_SHA256" : "TLS_AES_256_GCM_SHA384"
        #expect(SSL_CTX_set_ciphersuites(clientContext.context, name) == 1)
        SSL_CTX_set_keylog_callback(clientContext.context, keyLogLine)
        let pair = try InMemoryTLSPair(
            clientContext: clientContext,
            serverContext: TLSContext(configuration: openSSLRecordLayer(Self.payments.configuration()), role: .server),
            clientPeerIdentity: .exactly([SPIFFEID.service("payments")!]))
        try pair.connect()
        #expect(pair.clientRecorder.handshakeInfo != nil)
        let secret = try #require(KeyLog.secret("CLIENT_TRAFFIC_SECRET_0", of: clientContext.context))
        return (pair, secret)
    }

    /// Both sides keep OpenSSL's record layer: this test compares against it.
    func openSSLRecordLayer(_ configuration: TLSConfiguration) -> TLSConfiguration {
        var configuration = configuration
        configuration.recordLayer = .openSSL
        return configuration
    }

    @Test(arguments: [TLS13RecordProtection.Suite.aes128GCMSHA256, .aes256GCMSHA384])
    func recordsOpenSSLWroteOpenAndRecordsSealedHereAreReadByOpenSSL(_ suite: TLS13RecordProtection.Suite) throws {
        let (pair, secret) = try handshake(suite: suite)
        defer { pair.tearDown() }
        #expect(secret.count == suite.hashLength)

        // The client's OpenSSL writes its first application record (sequence 0); it is opened
        // here instead of reaching the server.
        try pair.client.writeAndFlush(ByteBuffer(string: "written by OpenSSL")).wait()
        var wire = ByteBuffer()
        while var bytes = try pair.client.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&bytes) }
        let opener = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: false)
        let (type, plaintext) = try wire.withUnsafeReadableBytes { try opener.open($0) }
        #expect(type == .applicationData)
        #expect(String(buffer: plaintext) == "written by OpenSSL")
        #expect(opener.sequence == 1)

        // Records sealed here at sequence 0 and 1, one padded, are what the server's OpenSSL
        // reads next (it never saw the one above).
        let sealer = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: true)
        var sealed = ByteBuffer()
        try Array("sealed here, ".utf8).withUnsafeBytes { try sealer.seal($0, padding: 7, into: &sealed) }
        try Array("twice".utf8).withUnsafeBytes { try sealer.seal($0, into: &sealed) }
        #expect(sealer.sequence == 2)
        try pair.server.writeInbound(sealed)
        try pair.pump()
        #expect(pair.serverRecorder.receivedString == "sealed here, twice")
        #expect(pair.serverRecorder.errors.isEmpty)
    }

    @Test func aTamperedRecordOrAWrongSequenceDoesNotOpenAndMovesNothing() throws {
        let suite = TLS13RecordProtection.Suite.aes128GCMSHA256
        let secret = [UInt8](repeating: 7, count: suite.hashLength)
        let sealer = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: true)
        var record = ByteBuffer()
        try Array("payload".utf8).withUnsafeBytes { try sealer.seal($0, padding: 3, into: &record) }
        let bytes = Array(record.readableBytesView)

        for index in [0, 3, 5, bytes.count / 2, bytes.count - 1] {
            var tampered = bytes
            tampered[index] ^= 0x01
            let opener = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: false)
            #expect(throws: TLSError.self) { try tampered.withUnsafeBytes { try opener.open($0) } }
            #expect(opener.sequence == 0)
        }
        let ahead = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: false, sequence: 1)
        #expect(throws: TLSError.self) { try bytes.withUnsafeBytes { try ahead.open($0) } }
        let opener = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: false)
        let (type, plaintext) = try bytes.withUnsafeBytes { try opener.open($0) }
        #expect(type == .applicationData && String(buffer: plaintext) == "payload")
        #expect(throws: TLSError.self) { try bytes.withUnsafeBytes { try opener.open($0) } }  // a replay is sequence 1
    }

    @Test func theKeyScheduleAndItsLimits() throws {
        let suite = TLS13RecordProtection.Suite.aes128GCMSHA256
        let secret = [UInt8](repeating: 1, count: 32)
        let next = try TLS13RecordProtection.nextTrafficSecret(after: secret, suite: suite)
        #expect(next.count == 32 && next != secret)
        #expect(try TLS13RecordProtection.nextTrafficSecret(after: secret, suite: suite) == next)
        #expect(try TLS13RecordProtection.expandLabel(secret: secret, label: "key", length: 16, suite: suite)
            != TLS13RecordProtection.expandLabel(secret: secret, label: "iv", length: 16, suite: suite))
        #expect(throws: TLSError.self) { try TLS13RecordProtection(suite: .aes256GCMSHA384, trafficSecret: secret, sealing: true) }
        let sealer = try TLS13RecordProtection(suite: suite, trafficSecret: secret, sealing: true)
        var output = ByteBuffer()
        let tooLarge = [UInt8](repeating: 0x41, count: TLS13RecordProtection.maxPlaintext + 1)
        #expect(throws: TLSError.self) { try tooLarge.withUnsafeBytes { try sealer.seal($0, into: &output) } }
        let padded = [UInt8](repeating: 0x41, count: 100)
        #expect(throws: TLSError.self) {
            try padded.withUnsafeBytes { try sealer.seal($0, padding: TLS13RecordProtection.maxPlaintext - 99, into: &output) }
        }
        #expect(output.readableBytes == 0 && sealer.sequence == 0)
        try padded.withUnsafeBytes { try sealer.seal($0, padding: TLS13RecordProtection.maxPlaintext - 100, into: &output) }
        #expect(output.readableBytes == 5 + TLS13RecordProtection.maxPlaintext + 1 + 16 && sealer.sequence == 1)
        #expect(TLS13RecordProtection.Suite(openSSLName: "TLS_CHACHA20_POLY1305_SHA256") == nil)
    }
}

/// OpenSSL's key log lines (NSS key log format), kept per `SSL_CTX`.
private enum KeyLog {
    static let lock = NSLock()
    nonisolated(unsafe) static var lines: [UInt: [String]] = [:]

    static func record(_ line: String, context: OpaquePointer) {
        lock.withLock { lines[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(context))), default: []].append(line) }
    }

    /// The secret of the line `label <client random> <secret>` logged for `context`.
    static func secret(_ label: String, of context: OpaquePointer) -> [UInt8]? {
        let logged = lock.withLock { lines[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(context)))] ?? [] }
        guard let line = logged.last(where: { $0.hasPrefix(label + " ") }) else { return nil }
        let hex = Array(line.split(separator: " ").last!.utf8)
        return stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }
}

private let keyLogLine: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { ssl, line in
    guard let ssl, let line, let context = SSL_get_SSL_CTX(ssl) else { return }
    KeyLog.record(String(cString: line), context: context)
}
