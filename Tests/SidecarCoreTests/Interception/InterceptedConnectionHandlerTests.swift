import NIOCore
import NIOEmbedded
import Testing

@testable import SidecarCore

/// A connection on a transparent outbound port, in memory: the original destination picks the
/// service, the first bytes pick HTTP or a tunnel, and the handler steps aside.
@Suite struct InterceptedConnectionHandlerTests {
    typealias H = ExchangeHarness
    /// payments' first instance runs on this host; its app's port is 8080.
    static let paymentsApp = HostPort(host: H.first.host, port: 8080)

    func outcomes(_ h: H) -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: InterceptOutcome.allCases.map {
            ($0.rawValue, h.metrics.interceptedConnections($0).value)
        })
    }

    @Test func httpToAServicesAddressGoesToThatServiceWithItsHostUnchanged() throws {
        let h = try H(rules: [RouteRule()], ledgerPolicy: .default(service: "ledger"))
        let channel = try h.interceptedDownstream(originalDestination: Self.paymentsApp)
        try h.send("GET /pay HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n\r\n", on: channel)
        #expect(h.upstreams.connections.count == 1)
        #expect([H.first, H.second].contains(h.upstreams.connections[0].address))
        let sent = try h.upstreams.received(0)
        #expect(sent.hasPrefix("GET /pay HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"), "\(sent)")
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer(on: channel) == H.ok)
        #expect(outcomes(h) == ["mesh-http": 1, "mesh-tcp": 0, "passthrough": 0, "refused": 0])
        #expect(throws: ChannelPipelineError.self, "the handler stepped out") {
            try channel.pipeline.syncOperations.handler(type: InterceptedConnectionHandler.self)
        }
    }

    @Test func aHostThatNamesAServiceStillWins() throws {
        let h = try H(rules: [RouteRule()], ledgerPolicy: .default(service: "ledger"))
        let channel = try h.interceptedDownstream(originalDestination: Self.paymentsApp)
        try h.send("GE", on: channel)
        #expect(h.upstreams.connections.isEmpty, "still sniffing")
        try h.send("T /entries HTTP/1.1\r\nHost: ledger\r\n\r\n", on: channel)
        #expect(h.upstreams.connections.map(\.address) == [H.ledger])
        #expect(try h.upstreams.received(0).hasPrefix("GET /entries HTTP/1.1\r\nHost: ledger\r\n"))
    }

    @Test func otherBytesGoAsATunnelToTheService() throws {
        let h = try H(rules: [RouteRule()])
        let channel = try h.interceptedDownstream(originalDestination: HostPort(host: H.second.host, port: 5432))
        try h.send("\u{0}\u{0}\u{0}\u{8}hello", on: channel)
        #expect(h.upstreams.connections.count == 1)
        #expect(try h.upstreams.received(0) == "\u{0}\u{0}\u{0}\u{8}hello")
        try h.upstreams.respond(0, "world")
        #expect(try h.answer(on: channel) == "world")
        #expect(outcomes(h)["mesh-tcp"] == 1)
    }

    @Test func aSilentClientBecomesATunnelAfterTheDetectionTimeout() throws {
        let h = try H(rules: [RouteRule()])
        let channel = try h.interceptedDownstream(originalDestination: Self.paymentsApp)
        h.loop.advanceTime(by: InterceptedConnectionHandler.detectionTimeout - .milliseconds(1))
        #expect(h.upstreams.connections.isEmpty)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(h.upstreams.connections.count == 1, "a server-speaks-first protocol gets its tunnel")
        try h.upstreams.respond(0, "220 smtp ready\r\n")
        #expect(try h.answer(on: channel) == "220 smtp ready\r\n")
    }

    @Test func aServiceDeclaredTCPIsTunnelledWithoutWaitingForBytes() throws {
        let h = try H(rules: [RouteRule()], ledgerPolicy: .default(service: "ledger"))
        h.context.replaceTable(RouteTable(
            localService: "web", trustDomain: "mesh.local",
            resources: [.service(MeshService(name: "ledger", appProtocol: .tcp)),
                        .instance(Instance(service: "ledger", address: H.ledger.host, port: H.ledger.port))]))
        _ = try h.interceptedDownstream(originalDestination: HostPort(host: H.ledger.host, port: 3306))
        #expect(h.upstreams.connections.map(\.address) == [H.ledger], "tunnelled at once")
        #expect(h.metrics.interceptedConnections(.meshTCP).value == 1)
    }

    @Test func registryOnlyRefusesAnAddressOutsideTheMeshAndCountsIt() throws {
        let h = try H(rules: [RouteRule()])
        let channel = try h.interceptedDownstream(
            originalDestination: HostPort(host: "192.0.2.7", port: 443), unknown: .registryOnly)
        #expect(!channel.isActive)
        #expect(h.upstreams.connections.isEmpty)
        #expect(outcomes(h) == ["mesh-http": 0, "mesh-tcp": 0, "passthrough": 0, "refused": 1])
    }

    @Test func aConnectionThatWasNotRedirectedIsTheOrdinaryOutboundProxy() throws {
        let h = try H(rules: [RouteRule()])
        let channel = try h.interceptedDownstream(originalDestination: nil)
        try h.send(H.get(), on: channel)
        #expect(h.upstreams.connections.count == 1)
        try h.upstreams.respond(0, H.ok)
        #expect(try h.answer(on: channel) == H.ok)
        #expect(outcomes(h).values.allSatisfy { $0 == 0 }, "not an intercepted connection")
    }
}
