import Testing

@testable import SidecarCore

extension ResilienceTests {
    /// `sidecar_endpoints{peer,state}` counts an endpoint once however many loops eject it,
    /// and stays true across snapshots that add or remove endpoints.
    @Suite struct EjectionLedgerTests {
        let a = HostPort(host: "10.0.0.1", port: 15006)
        let b = HostPort(host: "10.0.0.2", port: 15006)
        let c = HostPort(host: "10.0.0.3", port: 15006)

        @Test func eachEndpointCountsOnceAcrossLoops() {
            let metrics = SidecarMetrics()
            let ledger = EjectionLedger()
            let peer = metrics.peer("payments")
            ledger.setEndpoints(service: "payments", [a, b, c], metrics: metrics)
            #expect(peer.endpoints(.healthy).value == 3)
            ledger.record(service: "payments", endpoint: a, ejected: true, metrics: metrics)  // loop 1 found it
            ledger.record(service: "payments", endpoint: a, ejected: true, metrics: metrics)  // loop 2 adopted it
            #expect(peer.endpoints(.ejected).value == 1)
            #expect(peer.endpoints(.healthy).value == 2)
            ledger.record(service: "payments", endpoint: a, ejected: false, metrics: metrics)
            #expect(peer.endpoints(.ejected).value == 1, "still ejected on one loop")
            ledger.record(service: "payments", endpoint: a, ejected: false, metrics: metrics)
            #expect(peer.endpoints(.ejected).value == 0)
            #expect(peer.endpoints(.healthy).value == 3)
        }

        @Test func snapshotsRecountFromTheCurrentEndpoints() {
            let metrics = SidecarMetrics()
            let ledger = EjectionLedger()
            let peer = metrics.peer("payments")
            ledger.setEndpoints(service: "payments", [a, b], metrics: metrics)
            ledger.record(service: "payments", endpoint: a, ejected: true, metrics: metrics)
            // A new snapshot (RouteTable resets healthy to all of them) keeps the ejection.
            peer.endpoints(.healthy).set(3)
            ledger.setEndpoints(service: "payments", [a, b, c], metrics: metrics)
            #expect(peer.endpoints(.healthy).value == 2)
            #expect(peer.endpoints(.ejected).value == 1)
            // Removing the ejected endpoint drops it from both counts, before and after its
            // loops report the un-ejection.
            ledger.setEndpoints(service: "payments", [b, c], metrics: metrics)
            #expect(peer.endpoints(.ejected).value == 0)
            #expect(peer.endpoints(.healthy).value == 2)
            ledger.record(service: "payments", endpoint: a, ejected: false, metrics: metrics)
            #expect(peer.endpoints(.healthy).value == 2)
            #expect(ledger.ejectedCount(service: "payments") == 0)
        }
    }
}
