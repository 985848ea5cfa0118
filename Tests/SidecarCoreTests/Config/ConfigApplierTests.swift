import Foundation
import MeshTestSupport
import NIOPosix
import Testing

@testable import SidecarCore

/// `ConfigApplier`: a configuration that builds replaces the route table on the loops, the TLS
/// contexts of every role, `/config` and the version; one that does not build changes nothing.
@Suite struct ConfigApplierTests {
    static let pki = TestPKI()

    /// A running applier for `web` (static mode, version 1), calling payments.
    struct Running {
        let directory = TemporaryDirectory()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let metrics = SidecarMetrics()
        let applier: ConfigApplier
        let loops: ProxyLoops
        let base: SidecarConfiguration

        init(base configured: SidecarConfiguration? = nil) throws {
            var base = configured ?? SidecarConfiguration(
                service: "web", inbound: .init(app: HostPort(host: "127.0.0.1", port: 8080)),
                resources: [.instance(Instance(service: "payments", address: "127.0.0.1", port: 16006))])
            base.tls = try Self.write(ConfigApplierTests.pki.issue(service: "web"), to: directory, name: "web-1")
            let (contexts, table) = try ConfigApplier.prepare(base, metrics: metrics)
            let tls = TLSContextSet(contexts)
            loops = ProxyLoops(group: group, table: table, clientTLS: tls.client, tunnelTLS: tls.tunnel, http2TLS: tls.http2Client, metrics: metrics)
            applier = ConfigApplier(
                configuration: base, resources: base.resources, table: table, tls: tls, loops: loops, metrics: metrics)
            self.base = base
        }

        static func write(_ identity: TestIdentity, to directory: TemporaryDirectory, name: String) throws -> SidecarConfiguration.TLSFiles {
            let files = try identity.write(to: directory.url, name: name)
            return SidecarConfiguration.TLSFiles(certificate: files.cert, privateKey: files.key, trustBundle: files.ca)
        }

        /// The contexts new connections of each role take now.
        var contexts: [TLSContext] { [applier.tls.server.current, applier.tls.client.current, applier.tls.tunnel.current] }

        func close() {
            try? group.syncShutdownGracefully()
            directory.remove()
        }
    }

    @Test func aConfigThatBuildsReplacesTableTLSAndConfig() throws {
        let running = try Running()
        defer { running.close() }
        let before = running.contexts
        var next = running.base
        next.resources.append(.instance(Instance(service: "ledger", address: "127.0.0.1", port: 17006)))
        next.tls = try Running.write(Self.pki.issue(service: "web"), to: running.directory, name: "web-2")

        let version = try running.applier.apply(next)

        #expect(version == 2)
        #expect(running.applier.version == 2)
        #expect(running.metrics.configurationVersion.value == 2)
        let clusters = running.loops.clustersJSON()
        #expect(clusters.contains(#""version":2"#))
        #expect(clusters.contains(#""service":"ledger""#))
        #expect(running.applier.configurationJSON.contains("ledger"))
        for (old, new) in zip(before, running.contexts) {
            #expect(old !== new, "every role takes the new certificate")
        }
        #expect(running.applier.tls.server.current.leafCertificate?.spiffeID?.description == "spiffe://mesh.local/service/web")
    }

    @Test func aConfigThatDoesNotBuildChangesNothing() throws {
        let running = try Running()
        defer { running.close() }
        let before = running.contexts
        let clusters = running.loops.clustersJSON()
        let json = running.applier.configurationJSON

        // Another service's certificate, and a certificate file that is not there.
        var foreign = running.base
        foreign.resources.append(.instance(Instance(service: "ledger", address: "127.0.0.1", port: 17006)))
        foreign.tls = try Running.write(Self.pki.issue(service: "payments"), to: running.directory, name: "payments")
        var missing = foreign
        missing.tls?.certificate = running.directory.url.appendingPathComponent("absent.pem").path
        for refused in [foreign, missing] {
            #expect(throws: (any Error).self) { try running.applier.apply(refused) }
        }
        #expect(throws: (any Error).self) {
            let payments = Self.pki.issue(service: "payments")
            try running.applier.apply(identity: SidecarIdentity(
                certificateChain: .pem(payments.certificatePEM, name: "cert"), privateKey: .pem(payments.keyPEM, name: "key"),
                trustBundle: .pem(payments.trustPEM, name: "bundle")))
        }

        #expect(running.applier.version == 1)
        #expect(running.metrics.configurationVersion.value == 1)
        #expect(running.loops.clustersJSON() == clusters)
        #expect(running.applier.configurationJSON == json)
        for (old, new) in zip(before, running.contexts) {
            #expect(old === new)
        }
    }

    @Test func aSnapshotExtendsTheBootstrapResourcesAtItsVersion() throws {
        let running = try Running()
        defer { running.close() }
        try running.applier.apply(
            snapshot: [.instance(Instance(service: "ledger", address: "127.0.0.1", port: 17006))], version: 7)

        #expect(running.applier.version == 7)
        #expect(running.metrics.configurationVersion.value == 7)
        let clusters = running.loops.clustersJSON()
        #expect(clusters.contains(#""version":7"#))
        #expect(clusters.contains(#""service":"payments""#) && clusters.contains(#""service":"ledger""#))

        // A renewed certificate swaps the contexts and keeps the table.
        let before = running.contexts
        let renewed = Self.pki.issue(service: "web")
        try running.applier.apply(identity: SidecarIdentity(
            certificateChain: .pem(renewed.certificatePEM, name: "cert"), privateKey: .pem(renewed.keyPEM, name: "key"),
            trustBundle: .pem(renewed.trustPEM, name: "bundle")))
        for (old, new) in zip(before, running.contexts) {
            #expect(old !== new)
        }
        #expect(running.applier.version == 7)
    }

    @Test func aSnapshotTheSidecarCannotApplyIsRefusedWholeAndTheRunningOneStays() throws {
        // An inbound that carries bytes sees no method or path: an L7 allow rule can never match.
        let tcp = SidecarConfiguration(
            service: "web", inbound: .init(app: HostPort(host: "127.0.0.1", port: 8080), appProtocol: .tcp))
        let running = try Running(base: tcp)
        defer { running.close() }
        let json = running.applier.configurationJSON
        let policy = AuthorizationPolicy(
            service: "web", defaultAction: .deny, allow: [.init(from: ["payments"], methods: ["GET"])])
        #expect(throws: SnapshotRejection.self) {
            try running.applier.apply(snapshot: [.authorizationPolicy(policy)], version: 9)
        }
        #expect(running.applier.version == 1)
        #expect(running.applier.configurationJSON == json)
        // The same rule by caller alone applies.
        let byCaller = AuthorizationPolicy(service: "web", defaultAction: .deny, allow: [.init(from: ["payments"])])
        try running.applier.apply(snapshot: [.authorizationPolicy(byCaller)], version: 10)
        #expect(running.applier.version == 10)
        #expect(SnapshotCheck.problem(tcp, resources: [.authorizationPolicy(policy)])?.contains("allow[0]") == true)
        var http = tcp
        http.inbound.appProtocol = .http
        #expect(SnapshotCheck.problem(http, resources: [.authorizationPolicy(policy)]) == nil)
    }
}
