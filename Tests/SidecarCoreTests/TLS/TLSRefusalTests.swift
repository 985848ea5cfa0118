import Foundation
import MeshTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// Every way a peer must be refused at handshake, each asserting the typed reason.
@Suite struct TLSRefusalTests {
    static let pki = TestPKI()
    static let otherPKI = TestPKI(commonName: "another CA")
    static let web = pki.issue(service: "web")
    static let payments = pki.issue(service: "payments")

    func handshake(client: TLSConfiguration, server: TLSConfiguration, expecting: PeerIdentityPolicy? = nil)
        throws -> InMemoryTLSPair
    {
        let pair = try InMemoryTLSPair(
            clientContext: TLSContext(configuration: client, role: .client),
            serverContext: TLSContext(configuration: server, role: .server),
            clientPeerIdentity: expecting)
        try pair.connect()
        return pair
    }

    func expectRefused(_ pair: InMemoryTLSPair) {
        #expect(pair.serverRecorder.handshakeInfo == nil || pair.clientRecorder.handshakeInfo == nil)
        #expect(!pair.server.isActive || !pair.client.isActive)
        #expect(pair.serverRecorder.receivedString.isEmpty)
    }

    @Test func clientWithoutCertificate() throws {
        let pair = try handshake(client: Self.web.configuration(presentCertificate: false), server: Self.payments.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.peerNoCertificate])
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.peerNoCertificate])
    }

    @Test func clientCertificateFromAnotherCA() throws {
        var stranger = Self.otherPKI.issue(service: "web")
        stranger.trustPEM = Self.pki.rootPEM  // it trusts us; we do not trust its issuer
        let pair = try handshake(client: stranger.configuration(), server: Self.payments.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.untrustedIssuer])
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.untrustedIssuer])
    }

    @Test func serverCertificateFromAnotherCA() throws {
        var stranger = Self.otherPKI.issue(service: "payments")
        stranger.trustPEM = Self.pki.rootPEM
        let pair = try handshake(client: Self.web.configuration(), server: stranger.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.untrustedIssuer])
    }

    @Test func expiredClientCertificate() throws {
        let expired = Self.pki.issue(service: "web", notBefore: Date().addingTimeInterval(-7200), lifetime: 3600)
        let pair = try handshake(client: expired.configuration(), server: Self.payments.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.expired])
    }

    @Test func notYetValidServerCertificate() throws {
        let early = Self.pki.issue(service: "payments", notBefore: Date().addingTimeInterval(3600))
        let pair = try handshake(client: Self.web.configuration(), server: early.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.notYetValid])
    }

    @Test func wrongSPIFFEIDIsRefusedByTheClient() throws {
        let orders = Self.pki.issue(service: "orders")
        let pair = try handshake(
            client: Self.web.configuration(), server: orders.configuration(),
            expecting: .exactly([SPIFFEID.service("payments")!]))
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.identityMismatch])
        #expect(pair.clientRecorder.tlsErrors.first?.detail.contains("spiffe://mesh.local/service/orders") == true)
        // The server hears about it through the alert.
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.peerRejected])
    }

    @Test func foreignTrustDomainIsRefusedByTheServer() throws {
        let foreign = Self.pki.issue(service: "web", trustDomain: "other.org")
        let pair = try handshake(client: foreign.configuration(), server: Self.payments.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.foreignTrustDomain])
    }

    /// The sidecars' own profile (`TLSConfiguration.mesh`, as `TLSContextSet.Contexts` builds it).
    func meshConfiguration(_ identity: TestIdentity) -> TLSConfiguration {
        .mesh(
            certificateChain: .pem(identity.certificatePEM, name: "test cert"),
            privateKey: .pem(identity.keyPEM, name: "test key"),
            trustRoots: .pem(identity.trustPEM, name: "test trust bundle"))
    }

    /// DESIGN: a peer whose SPIFFE ID is not `spiffe://<td>/service/<name>` is refused at the
    /// handshake, even with a certificate from the mesh CA and the right trust domain.
    @Test(arguments: ["spiffe://mesh.local/admin", "spiffe://mesh.local/control-plane", "spiffe://mesh.local/service/web/extra"])
    func nonServiceIdentityIsRefusedByTheMeshServer(id: String) throws {
        let impostor = Self.pki.issue(identity: SPIFFEID(id)!)
        let pair = try handshake(client: meshConfiguration(impostor), server: meshConfiguration(Self.payments))
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.identityMismatch])
        #expect(pair.serverRecorder.tlsErrors.first?.presentedIdentity == SPIFFEID(id))
        let detail = pair.serverRecorder.tlsErrors.first?.detail ?? ""
        #expect(detail.contains(id) && detail.contains("spiffe://mesh.local/service/<name>"), "\(detail)")
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.peerRejected])
    }

    @Test func nonServiceIdentityIsRefusedByTheMeshClient() throws {
        let impostor = Self.pki.issue(identity: SPIFFEID("spiffe://mesh.local/admin")!)
        // No per-connection narrowing: the context's own policy must refuse it.
        let pair = try handshake(client: meshConfiguration(Self.web), server: meshConfiguration(impostor))
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.identityMismatch])
        #expect(pair.clientRecorder.tlsErrors.first?.detail.contains("spiffe://mesh.local/admin") == true)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.peerRejected])
    }

    @Test func serviceIdentitiesPassTheMeshProfile() throws {
        let pair = try handshake(client: meshConfiguration(Self.web), server: meshConfiguration(Self.payments))
        defer { pair.tearDown() }
        #expect(pair.serverRecorder.handshakeInfo?.peerIdentity == SPIFFEID.service("web"))
        #expect(pair.clientRecorder.handshakeInfo?.peerIdentity == SPIFFEID.service("payments"))
    }

    @Test func servicePolicyAcceptsOnlyServiceIDsOfItsTrustDomain() {
        let policy = PeerIdentityPolicy.service(inTrustDomain: "mesh.local")
        #expect(policy.evaluate(SPIFFEID("spiffe://mesh.local/service/web")) == nil)
        #expect(policy.evaluate(SPIFFEID("spiffe://mesh.local/admin")) == .identityMismatch)
        #expect(policy.evaluate(SPIFFEID("spiffe://mesh.local/service")) == .identityMismatch)
        #expect(policy.evaluate(SPIFFEID("spiffe://mesh.local/service/a/b")) == .identityMismatch)
        #expect(policy.evaluate(SPIFFEID("spiffe://mesh.local")) == .identityMismatch)
        #expect(policy.evaluate(nil) == .identityMismatch)
        #expect(policy.evaluate(SPIFFEID("spiffe://other.org/service/web")) == .foreignTrustDomain)
    }

    @Test func tls12OnlyClientAgainstTls13Server() throws {
        let pair = try handshake(
            client: Self.web.configuration(minimumVersion: .tls12, maximumVersion: .tls12),
            server: Self.payments.configuration())
        defer { pair.tearDown() }
        expectRefused(pair)
        #expect(pair.serverRecorder.tlsErrors.map(\.reason) == [.protocolVersion])
        #expect(pair.clientRecorder.tlsErrors.map(\.reason) == [.protocolVersion])
    }

    @Test func tls12IsAvailableWhenConfigured() throws {
        let pair = try handshake(
            client: Self.web.configuration(minimumVersion: .tls12, maximumVersion: .tls12),
            server: Self.payments.configuration(minimumVersion: .tls12, maximumVersion: .tls13))
        defer { pair.tearDown() }
        #expect(pair.serverRecorder.handshakeInfo?.protocolVersion == "TLSv1.2")
        #expect(pair.serverRecorder.handshakeInfo?.peerIdentity?.serviceName == "web")
    }

    /// Bytes named in the test list by what they are, not printed whole.
    struct NotAClientHello: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let bytes: [UInt8]
    }

    @Test(arguments: [
        NotAClientHello(testDescription: "a plain HTTP request", bytes: Array("GET / HTTP/1.1\r\nHost: payments\r\n\r\n".utf8)),
        NotAClientHello(testDescription: "64 zero bytes", bytes: [UInt8](repeating: 0, count: 64)),
        NotAClientHello(testDescription: "600 pseudo-random bytes", bytes: (0..<600).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }),
        NotAClientHello(
            testDescription: "a handshake record header announcing 65535 bytes, then 40",
            bytes: [0x16, 0x03, 0x01, 0xFF, 0xFF] + [UInt8](repeating: 0x41, count: 40)),
    ])
    func garbageInsteadOfClientHelloClosesWithoutCrash(garbage: NotAClientHello) throws {
        let bytes = garbage.bytes
        let context = try TLSContext(configuration: Self.payments.configuration(), role: .server)
        let channel = EmbeddedChannel()
        let recorder = EventRecorder()
        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context))
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        if channel.isActive {
            // A plausible record header announcing more bytes: the peer then goes away.
            channel.pipeline.fireChannelInactive()
        }
        #expect(recorder.received.readableBytes == 0)
        #expect(recorder.tlsErrors.count == 1)
        let reason = recorder.tlsErrors.first?.reason
        #expect(reason == .notTLS || reason == .closedDuringHandshake || reason == .protocolVersion)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}

