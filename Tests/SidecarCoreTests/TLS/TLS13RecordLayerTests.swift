import COpenSSL
import MeshTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// The switch from OpenSSL's record layer to the mesh's own (`TLS13RecordLayer`) on real
/// handshakes between two `TLSHandler`s: when each side switches, data both ways across the
/// switch, against a peer that keeps OpenSSL's record layer (both directions, KeyUpdates every
/// few records), resumption, close_notify, tampering and hostile records.
@Suite(.cpuBound) struct TLS13RecordLayerTests {
    static let pki = TestPKI()
    static let web = pki.issue(service: "web")
    static let payments = pki.issue(service: "payments")

    func makePair(
        client: TLSConfiguration = web.configuration(), server: TLSConfiguration = payments.configuration(),
        clientSuites: String? = nil
    ) throws -> InMemoryTLSPair {
        let clientContext = try TLSContext(configuration: client, role: .client)
        if let clientSuites { #expect(SSL_CTX_set_ciphersuites(clientContext.context, clientSuites) == 1) }
        return try InMemoryTLSPair(
            clientContext: clientContext, serverContext: TLSContext(configuration: server, role: .server),
            clientPeerIdentity: .exactly([SPIFFEID.service("payments")!]))
    }

    func handler(_ channel: EmbeddedChannel) throws -> TLSHandler {
        try channel.pipeline.syncOperations.handler(type: TLSHandler.self)
    }

    /// `rounds` requests and answers of growing size (up to past a 2^14 record), then one large
    /// write each way; every byte arrives in order.
    func exchange(_ pair: InMemoryTLSPair, rounds: Int = 40, after earlier: (client: String, server: String) = ("", "")) throws {
        var sentByClient = ByteBuffer(string: earlier.client)
        var sentByServer = ByteBuffer(string: earlier.server)
        for round in 0..<rounds {
            let request = ByteBuffer(string: "request \(round) " + String(repeating: "q", count: round * 431))
            let answer = ByteBuffer(string: "answer \(round) " + String(repeating: "a", count: round * 457))
            sentByClient.writeImmutableBuffer(request)
            sentByServer.writeImmutableBuffer(answer)
            try pair.client.writeAndFlush(request).wait()
            try pair.pump()
            try pair.server.writeAndFlush(answer).wait()
            try pair.pump()
        }
        var large = ByteBuffer()
        for index in 0..<(100 * 1024 + 1) { large.writeInteger(UInt8(truncatingIfNeeded: index &* 31)) }
        sentByClient.writeImmutableBuffer(large)
        sentByServer.writeImmutableBuffer(large)
        try pair.client.writeAndFlush(large).wait()
        try pair.server.writeAndFlush(large).wait()
        try pair.pump()
        #expect(pair.serverRecorder.received == sentByClient)
        #expect(pair.clientRecorder.received == sentByServer)
        #expect(pair.clientRecorder.errors.isEmpty && pair.serverRecorder.errors.isEmpty)
    }

    @Test(arguments: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"])
    func theServerSwitchesAtTheHandshakeAndTheClientAfterItsFirstRecord(suite: String) throws {
        let pair = try makePair(clientSuites: suite)
        defer { pair.tearDown() }
        try pair.connect()
        #expect(try handler(pair.server).usesMeshRecordLayer == (true, true))
        #expect(try handler(pair.client).usesMeshRecordLayer == (true, false), "the server's tickets are OpenSSL's to read")
        try pair.client.writeAndFlush(ByteBuffer(string: "ping")).wait()
        try pair.pump()
        try pair.server.writeAndFlush(ByteBuffer(string: "pong")).wait()
        try pair.pump()
        #expect(try handler(pair.client).usesMeshRecordLayer == (true, true))
        #expect(pair.serverRecorder.receivedString == "ping" && pair.clientRecorder.receivedString == "pong")
        try exchange(pair, after: ("ping", "pong"))
    }

    @Test func chaCha20AndTLS12StayWithOpenSSL() throws {
        let chacha = try makePair(clientSuites: "TLS_CHACHA20_POLY1305_SHA256")
        defer { chacha.tearDown() }
        try chacha.connect()
        try exchange(chacha, rounds: 5)
        #expect(try handler(chacha.server).usesMeshRecordLayer == (false, false))
        #expect(try handler(chacha.client).usesMeshRecordLayer == (false, false))

        let tls12 = try makePair(
            client: Self.web.configuration(minimumVersion: .tls12, maximumVersion: .tls12),
            server: Self.payments.configuration(minimumVersion: .tls12))
        defer { tls12.tearDown() }
        try tls12.connect()
        try exchange(tls12, rounds: 5)
        #expect(try handler(tls12.server).usesMeshRecordLayer == (false, false))
    }

    /// A peer on OpenSSL's record layer reads what the mesh layer writes and the other way
    /// round, with the mesh side moving its write key every 3 records (OpenSSL follows its
    /// KeyUpdates).
    @Test(arguments: [true, false])
    func aPeerOnOpenSSLsRecordLayerInterworks(meshServer: Bool) throws {
        var mesh = (meshServer ? Self.payments : Self.web).configuration()
        mesh.recordsPerKey = 3
        var openSSL = (meshServer ? Self.web : Self.payments).configuration()
        openSSL.recordLayer = .openSSL
        let pair = try meshServer ? makePair(client: openSSL, server: mesh) : makePair(client: mesh, server: openSSL)
        defer { pair.tearDown() }
        try pair.connect()
        try exchange(pair)
        let (meshSide, openSSLSide) = meshServer ? (pair.server, pair.client) : (pair.client, pair.server)
        #expect(try handler(meshSide).usesMeshRecordLayer == (true, true))
        #expect(try handler(openSSLSide).usesMeshRecordLayer == (false, false))
    }

    /// A peer on OpenSSL's record layer sends KeyUpdates asking for ours: the mesh side
    /// answers each with one of its own (and the peer reads what follows with its next key),
    /// whether the mesh layer reads the request (the server) or OpenSSL still did (the client,
    /// before its first application record).
    @Test(arguments: [true, false])
    func aKeyUpdateRequestIsAnswered(meshServer: Bool) throws {
        var openSSL = (meshServer ? Self.web : Self.payments).configuration()
        openSSL.recordLayer = .openSSL
        let mesh = (meshServer ? Self.payments : Self.web).configuration()
        let pair = try meshServer ? makePair(client: openSSL, server: mesh) : makePair(client: mesh, server: openSSL)
        defer { pair.tearDown() }
        try pair.connect()
        let (meshSide, openSSLSide) = meshServer ? (pair.server, pair.client) : (pair.client, pair.server)
        for round in 1...3 {
            #expect(SSL_key_update(try handler(openSSLSide).connection.ssl, SSL_KEY_UPDATE_REQUESTED) == 1)
            try openSSLSide.writeAndFlush(ByteBuffer(string: "after update \(round);")).wait()
            try pair.pump()
            try meshSide.writeAndFlush(ByteBuffer(string: "answer \(round);")).wait()
            try pair.pump()
            #expect(try handler(meshSide).connection.meshRecordLayer?.keyUpdatesSent == round)
        }
        let meshReceived = (meshServer ? pair.serverRecorder : pair.clientRecorder).receivedString
        let openSSLReceived = (meshServer ? pair.clientRecorder : pair.serverRecorder).receivedString
        #expect(meshReceived == "after update 1;after update 2;after update 3;")
        #expect(openSSLReceived == "answer 1;answer 2;answer 3;")
        #expect(pair.clientRecorder.errors.isEmpty && pair.serverRecorder.errors.isEmpty)
    }

    @Test func bothMeshSidesMoveTheirKeysEveryFewRecords() throws {
        var client = Self.web.configuration()
        client.recordsPerKey = 2
        var server = Self.payments.configuration()
        server.recordsPerKey = 5
        let pair = try makePair(client: client, server: server)
        defer { pair.tearDown() }
        try pair.connect()
        try exchange(pair)
    }

    @Test func aResumedSessionSwitchesToo() throws {
        let clientContext = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let serverContext = try TLSContext(configuration: Self.payments.configuration(), role: .server)
        let first = try InMemoryTLSPair(clientContext: clientContext, serverContext: serverContext)
        try first.connect()
        try exchange(first, rounds: 2)
        first.tearDown()
        let second = try InMemoryTLSPair(clientContext: clientContext, serverContext: serverContext)
        defer { second.tearDown() }
        try second.connect()
        #expect(second.clientRecorder.handshakeInfo?.resumed == true)
        try exchange(second, rounds: 3)
        #expect(second.serverRecorder.handshakeInfo?.resumed == true)
        #expect(try handler(second.client).usesMeshRecordLayer == (true, true))
        #expect(try handler(second.server).usesMeshRecordLayer == (true, true))
    }

    @Test(arguments: [true, false])
    func closeNotifyFromTheMeshLayerIsAnswered(clientCloses: Bool) throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        try exchange(pair, rounds: 1)
        let (closing, other) = clientCloses ? (pair.client, pair.serverRecorder) : (pair.server, pair.clientRecorder)
        let closed = closing.close()
        try pair.pump()
        try closed.wait()
        #expect(other.events.contains(.closeNotifyReceived))
        #expect(other.inactive && other.errors.isEmpty)
    }

    /// A record changed on the wire does not open: the server fails the connection and sends
    /// bad_record_mac, which the client's OpenSSL (not yet reading with the mesh layer) reports.
    @Test func aTamperedRecordIsRefusedWithBadRecordMAC() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        try pair.client.writeAndFlush(ByteBuffer(string: "an honest request")).wait()
        var wire = ByteBuffer()
        while var bytes = try pair.client.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&bytes) }
        let last = wire.writerIndex - 1
        wire.setInteger(wire.getInteger(at: last, as: UInt8.self)! ^ 0x01, at: last)
        try pair.server.writeInbound(wire)
        #expect(pair.serverRecorder.receivedString.isEmpty)
        #expect(pair.serverRecorder.tlsErrors.first?.detail.contains("did not authenticate") == true)
        try pair.pump()
        let clientError = pair.clientRecorder.tlsErrors.first?.detail ?? ""
        #expect(clientError.contains("bad record mac"), "client saw: \(clientError)")
    }

    /// Records the mesh layer refuses, each on a fresh connection: too long, a plaintext
    /// (unprotected) alert, a malformed KeyUpdate and a post-handshake message the mesh never
    /// accepts.
    @Test func hostileRecordsFailTheConnectionWithAClearError() throws {
        func serverError(after bytes: [UInt8]) throws -> String {
            let pair = try makePair()
            defer { pair.tearDown() }
            try pair.connect()
            try pair.server.writeInbound(ByteBuffer(bytes: bytes))
            #expect(!pair.server.isActive)
            return pair.serverRecorder.tlsErrors.first?.detail ?? "no error"
        }
        #expect(try serverError(after: [23, 3, 3, 0x41, 0x01]).contains("longer than 2^14 + 256"))
        #expect(try serverError(after: [21, 3, 3, 0, 32] + [UInt8](repeating: 0, count: 32)).contains("header is malformed"))

        // Sealed under the client's current key: a KeyUpdate whose request_update is neither
        // 0 nor 1 (illegal_parameter), a CertificateRequest (below).
        let badUpdate = try makePair()
        defer { badUpdate.tearDown() }
        try badUpdate.connect()
        var update = ByteBuffer()
        try #require(try handler(badUpdate.client).connection.meshRecordLayer).seal([24, 0, 0, 1, 2], as: .handshake, into: &update)
        try badUpdate.server.writeInbound(update)
        #expect(!badUpdate.server.isActive)
        #expect(badUpdate.serverRecorder.tlsErrors.first?.detail.contains("request_update 2 (sent illegal parameter)") == true)

        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        // A CertificateRequest (type 13: post-handshake authentication, never asked for),
        // sealed under the client's current key.
        let layer = try #require(try handler(pair.client).connection.meshRecordLayer)
        var record = ByteBuffer()
        try layer.seal([13, 0, 0, 1, 0], as: .handshake, into: &record)
        try pair.server.writeInbound(record)
        #expect(!pair.server.isActive)
        #expect(pair.serverRecorder.tlsErrors.first?.detail.contains("unexpected post-handshake message (type 13)") == true)
    }
}
