import Foundation
import MeshTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// Handshake, data and close over two in-memory channels.
@Suite(.cpuBound) struct TLSHandshakeTests {
    static let pki = TestPKI()
    static let web = pki.issue(service: "web")
    static let payments = pki.issue(service: "payments")

    func makePair(
        client: TLSConfiguration = web.configuration(),
        server: TLSConfiguration = payments.configuration(),
        clientPeer: PeerIdentityPolicy? = .exactly([SPIFFEID.service("payments")!])
    ) throws -> InMemoryTLSPair {
        try InMemoryTLSPair(
            clientContext: TLSContext(configuration: client, role: .client),
            serverContext: TLSContext(configuration: server, role: .server),
            clientPeerIdentity: clientPeer)
    }

    @Test func handshakeAndEchoBothWays() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        // Written before the handshake finishes: buffered, then sent.
        let written = pair.client.writeAndFlush(ByteBuffer(string: "ping from web"))
        try pair.connect()
        try written.wait()
        #expect(pair.serverRecorder.receivedString == "ping from web")
        try pair.server.writeAndFlush(ByteBuffer(string: "pong from payments")).wait()
        try pair.pump()
        #expect(pair.clientRecorder.receivedString == "pong from payments")
        #expect(pair.clientRecorder.errors.isEmpty)
        #expect(pair.serverRecorder.errors.isEmpty)
    }

    @Test func peerIdentityAlpnAndSNIReachTheNextHandler() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        let serverSide = try #require(pair.serverRecorder.handshakeInfo)
        #expect(serverSide.peerIdentity == SPIFFEID("spiffe://mesh.local/service/web"))
        #expect(serverSide.negotiatedProtocol == "http/1.1")
        #expect(serverSide.serverName == "payments")
        #expect(serverSide.protocolVersion == "TLSv1.3")
        let clientSide = try #require(pair.clientRecorder.handshakeInfo)
        #expect(clientSide.peerIdentity?.serviceName == "payments")
        #expect(clientSide.negotiatedProtocol == "http/1.1")
        let handler = try pair.server.pipeline.syncOperations.handler(type: TLSHandler.self)
        #expect(handler.handshakeInfo?.peerIdentity?.serviceName == "web")
    }

    @Test func serverAcceptsClientOfferingNoALPN() throws {
        var client = Self.web.configuration()
        client.alpnProtocols = []
        let pair = try makePair(client: client)
        defer { pair.tearDown() }
        try pair.connect()
        #expect(pair.serverRecorder.handshakeInfo?.negotiatedProtocol == nil)
        #expect(pair.serverRecorder.errors.isEmpty)
    }

    @Test func largeWritesArriveIntact() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        var payload = ByteBuffer()
        // SplitMix64 from a random seed: bytes that never repeat a record's worth, without a
        // getrandom call per word (2.2 million of them held a thread for seconds).
        var state = UInt64.random(in: .min ... .max)
        let size = 17 * 1024 * 1024 + 123
        payload.reserveCapacity(size)
        for _ in 0..<(size / 8) {
            state &+= 0x9E37_79B9_7F4A_7C15
            var word = (state ^ (state >> 30)) &* 0xBF58_476D_1CE4_E5B9
            word = (word ^ (word >> 27)) &* 0x94D0_49BB_1331_11EB
            payload.writeInteger(word ^ (word >> 31))
        }
        payload.writeRepeatingByte(7, count: size % 8)
        try pair.client.writeAndFlush(payload).wait()
        try pair.pump()
        #expect(pair.serverRecorder.received.readableBytes == size)
        #expect(pair.serverRecorder.received == payload)
    }

    /// OpenSSL reads ciphertext out of the network's own buffers: records cut anywhere (a
    /// header split, many records in one read, one record over many reads) arrive intact.
    @Test func recordsCutAtAnyByteArriveIntact() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        var payload = ByteBuffer()
        for index in 0..<(100 * 1024) { payload.writeInteger(UInt8(truncatingIfNeeded: index &* 7)) }
        pair.client.write(payload, promise: nil)
        pair.client.flush()
        var wire = ByteBuffer()
        while var bytes = try pair.client.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&bytes) }
        let cuts = [1, 4, 1, 16_000, 3, 40_000, 7, 5, 2, 20_000]
        var index = 0
        while wire.readableBytes > 0 {
            let slice = wire.readSlice(length: min(cuts[index % cuts.count], wire.readableBytes))!
            try pair.server.writeInbound(slice)
            index += 1
        }
        #expect(pair.serverRecorder.received == payload)
        #expect(pair.serverRecorder.errors.isEmpty)
    }

    @Test func writesUntilAFlushGoOutAsOneRecord() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        let head = pair.client.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"))
        let body = pair.client.write(ByteBuffer(string: "body"))
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == nil, "nothing leaves before the flush")
        pair.client.flush()
        var records = 0
        var wire = ByteBuffer()
        while var bytes = try pair.client.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&bytes) }
        var scan = wire
        while let header = scan.readSlice(length: 5) {
            #expect(header.getInteger(at: header.readerIndex, as: UInt8.self) == 23, "application data")
            let length = Int(header.getInteger(at: header.readerIndex + 3, as: UInt16.self)!)
            try #require(scan.readableBytes >= length, "a whole record")
            scan.moveReaderIndex(forwardBy: length)
            records += 1
        }
        #expect(records == 1, "head and body sealed together")
        try head.wait()
        try body.wait()
        try pair.server.writeInbound(wire)
        #expect(pair.serverRecorder.receivedString == "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody")
    }

    @Test func closeNotifyIsSentAndAnswered() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        let closed = pair.client.close()
        try pair.pump()
        try closed.wait()
        #expect(pair.serverRecorder.events.contains(.closeNotifyReceived))
        #expect(pair.serverRecorder.inactive)
        #expect(pair.serverRecorder.errors.isEmpty)
    }

    @Test func handshakeTimesOutWhenThePeerSaysNothing() throws {
        let context = try TLSContext(configuration: Self.payments.configuration(handshakeTimeout: 10), role: .server)
        let channel = EmbeddedChannel()
        let recorder = EventRecorder()
        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context))
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(recorder.errors.isEmpty)
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(recorder.tlsErrors.map(\.reason) == [.handshakeTimeout])
        #expect(!channel.isActive)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    @Test func writesAfterCloseFail() throws {
        let pair = try makePair()
        defer { pair.tearDown() }
        try pair.connect()
        pair.client.close(promise: nil)
        #expect(throws: ChannelError.ioOnClosedChannel) {
            try pair.client.writeAndFlush(ByteBuffer(string: "late")).wait()
        }
        try pair.pump()
        #expect(pair.serverRecorder.events.contains(.closeNotifyReceived))
        #expect(pair.serverRecorder.receivedString.isEmpty, "nothing written after close reaches the peer")
    }

    @Test func sessionsResume() throws {
        let clientContext = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let serverContext = try TLSContext(configuration: Self.payments.configuration(), role: .server)
        let first = try InMemoryTLSPair(clientContext: clientContext, serverContext: serverContext)
        try first.connect()
        try first.server.writeAndFlush(ByteBuffer(string: "x")).wait()
        try first.pump()
        #expect(first.clientRecorder.handshakeInfo?.resumed == false)
        first.tearDown()

        let second = try InMemoryTLSPair(clientContext: clientContext, serverContext: serverContext)
        defer { second.tearDown() }
        try second.connect()
        #expect(second.clientRecorder.handshakeInfo?.resumed == true)
        #expect(second.serverRecorder.handshakeInfo?.resumed == true)
        #expect(second.serverRecorder.handshakeInfo?.peerIdentity?.serviceName == "web")
    }

    @Test func resumedSessionStillChecksTheExpectedIdentity() throws {
        let clientContext = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let serverContext = try TLSContext(configuration: Self.payments.configuration(), role: .server)
        let first = try InMemoryTLSPair(clientContext: clientContext, serverContext: serverContext, sessionKey: "shared")
        try first.connect()
        first.tearDown()
        // Same session key, but now the client expects another service.
        let second = try InMemoryTLSPair(
            clientContext: clientContext, serverContext: serverContext,
            clientPeerIdentity: .exactly([SPIFFEID.service("orders")!]), sessionKey: "shared")
        defer { second.tearDown() }
        try second.connect()
        #expect(second.clientRecorder.tlsErrors.map(\.reason) == [.identityMismatch])
    }

    @Test func rotationServesNewCertificateToNewConnectionsOnly() throws {
        let store = TLSContextStore(try TLSContext(configuration: Self.payments.configuration(), role: .server))
        let clientContext = try TLSContext(configuration: Self.web.configuration(), role: .client)
        let old = try InMemoryTLSPair(clientContext: clientContext, serverContext: store.current, sessionKey: "old")
        defer { old.tearDown() }
        try old.connect()

        let rotated = Self.pki.issue(service: "payments", lifetime: 7200)
        store.replace(with: try TLSContext(configuration: rotated.configuration(), role: .server))
        let new = try InMemoryTLSPair(clientContext: clientContext, serverContext: store.current, sessionKey: "new")
        defer { new.tearDown() }
        try new.connect()

        let oldExpiry = try #require(old.clientRecorder.handshakeInfo?.peerCertificateNotAfter)
        let newExpiry = try #require(new.clientRecorder.handshakeInfo?.peerCertificateNotAfter)
        #expect(newExpiry > oldExpiry + 3000)

        // The old connection still carries data both ways.
        try old.client.writeAndFlush(ByteBuffer(string: "still here")).wait()
        try old.pump()
        #expect(old.serverRecorder.receivedString == "still here")
    }
}

