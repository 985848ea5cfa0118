import Testing

@testable import SidecarCore

/// Which service an intercepted connection's original destination names.
@Suite struct ServiceAddressMapTests {
    @Test func instanceAddressesAndServiceVirtualIPsNameTheirService() throws {
        let map = ServiceAddressMap(resources: [
            .instance(Instance(service: "payments", address: "10.77.0.2", port: 15006)),
            .instance(Instance(service: "payments", address: "10.77.0.4", port: 15006)),
            .service(MeshService(name: "ledger", addresses: ["10.96.0.10", "fd00::10"])),
            .instance(Instance(service: "db", address: "db.internal", port: 15006)),
        ])
        #expect(map.service(address: "10.77.0.2", port: 8080) == "payments", "any port of the instance's host")
        #expect(map.service(address: "10.77.0.4", port: 443) == "payments")
        #expect(map.service(address: "10.96.0.10", port: 80) == "ledger")
        #expect(map.service(address: "fd00::10", port: 80) == "ledger")
        #expect(map.service(address: "10.77.0.3", port: 8080) == nil)
    }

    @Test func addressesAreMatchedInOneSpelling() {
        let map = ServiceAddressMap(resources: [
            .service(MeshService(name: "ledger", addresses: ["010.096.000.010", "FD77:0:0::0:2"])),
        ])
        #expect(map.service(address: "10.96.0.10", port: 80) == "ledger")
        #expect(map.service(address: "fd77::2", port: 80) == "ledger", "IPv6 as inet_ntop writes SO_ORIGINAL_DST's")
    }

    @Test func servicesSharingAnAddressAreToldApartByTheirPortOrNotAtAll() {
        let map = ServiceAddressMap(resources: [
            .instance(Instance(service: "payments", address: "10.77.0.2", port: 15006)),
            .instance(Instance(service: "ledger", address: "10.77.0.2", port: 16006)),
            .service(MeshService(name: "ledger", port: 9090)),
        ])
        #expect(map.service(address: "10.77.0.2", port: 9090) == "ledger")
        #expect(map.service(address: "10.77.0.2", port: 8080) == nil, "ambiguous: outside the mesh")
    }

    @Test func servicesDeclaredTCPAreKnown() {
        let map = ServiceAddressMap(resources: [
            .service(MeshService(name: "db", appProtocol: .tcp)), .service(MeshService(name: "web")),
        ])
        #expect(map.isDeclaredTCP("db"))
        #expect(!map.isDeclaredTCP("web") && !map.isDeclaredTCP("ledger"))
    }

    @Test func theRouteTableCarriesTheMapOfItsSnapshot() {
        let table = RouteTable(localService: "web", trustDomain: "mesh.local", resources: [
            .service(MeshService(name: "ledger", addresses: ["10.96.0.10"])),
        ])
        #expect(table.addresses.service(address: "10.96.0.10", port: 1) == "ledger")
        #expect(table.destinations["ledger"] != nil)
    }
}
