import ControlPlane
import MeshAPI
import SidecarCore
import Testing

/// What a service sees: its own inbound policy, and for what it calls: routes, policies,
/// healthy instances.
@Suite struct MeshSnapshotTests {
    let stored: [MeshResource] = [
        .authorizationPolicy(AuthorizationPolicy(service: "payments", defaultAction: .deny, allow: [.init(from: ["web"])])),
        .authorizationPolicy(AuthorizationPolicy(service: "web", defaultAction: .allow)),
        .trafficPolicy(TrafficPolicy(service: "payments", rateLimit: RateLimit(requestsPerSecond: 10, burst: 10))),
        .trafficPolicy(TrafficPolicy(service: "ledger")),
        MeshSnapshotTests.route("payments"),
        MeshSnapshotTests.route("ledger"),
        .instance(Instance(service: "ledger", address: "10.0.0.9", port: 1)),
        .instance(Instance(service: "ledger", address: "10.0.0.8", port: 1, health: .unhealthy)),
    ]
    let registered = [
        Instance(service: "payments", address: "10.0.0.2", port: 15006),
        Instance(service: "payments", address: "10.0.0.3", port: 15006, health: .unhealthy),
        Instance(service: "web", address: "10.0.0.1", port: 15006),
    ]

    static func route(_ service: String) -> MeshResource {
        try! MeshResourceDecoder.decodeDocuments(yaml: """
            kind: Route
            service: \(service)
            rules: [ { match: { pathPrefix: / }, backends: [ { subset: {}, weight: 100 } ] } ]
            """)[0]
    }

    func names(_ snapshot: MeshSnapshot) -> [String] {
        snapshot.resources.map { "\($0.kind) \($0.name)" }
    }

    @Test func declaredDependenciesLimitWhatIsSeen() {
        let snapshot = MeshSnapshot.compute(
            service: "web", version: 7, stored: stored, registered: registered, dependencies: ["payments"])
        #expect(snapshot.version == 7)
        #expect(names(snapshot) == [
            "AuthorizationPolicy web",
            "Instance payments-10.0.0.2-15006",
            "Route payments",
            "TrafficPolicy payments",
        ])
    }

    @Test func inboundPolicyOfTheServiceItself() {
        let snapshot = MeshSnapshot.compute(
            service: "payments", version: 1, stored: stored, registered: registered, dependencies: ["ledger"])
        #expect(names(snapshot) == [
            "AuthorizationPolicy payments",
            "Instance ledger-10.0.0.9-1",
            "Route ledger",
            "TrafficPolicy ledger",
            "TrafficPolicy payments",
        ])
    }

    @Test func noDeclaredDependenciesSeesEveryService() {
        let snapshot = MeshSnapshot.compute(service: "web", version: 1, stored: stored, registered: registered, dependencies: nil)
        #expect(names(snapshot).contains("Route ledger"))
        #expect(names(snapshot).contains("Route payments"))
        #expect(!names(snapshot).contains("AuthorizationPolicy payments"), "another service's inbound policy is not ours")
        #expect(!names(snapshot).contains("Instance ledger-10.0.0.8-1"), "unhealthy instances are left out")
        #expect(!names(snapshot).contains("Instance payments-10.0.0.3-15006"))
    }

    @Test func wireFormDecodesBackAsResources() throws {
        let snapshot = MeshSnapshot.compute(service: "web", version: 3, stored: stored, registered: registered, dependencies: nil)
        let json = snapshot.json
        #expect(json.hasPrefix(#"{"service":"web","version":"3","resources":["#))
        let start = json.range(of: #""resources":"#)!.upperBound
        let list = String(json[start..<json.index(before: json.endIndex)])
        #expect(try MeshResourceDecoder.decodeJSON(list) == snapshot.resources)
    }

    @Test func theWireFormDecodesInTheSidecarToTheSameResources() throws {
        var versioned = stored
        if case .route(var route) = versioned[4] {
            route.resourceVersion = "12"
            versioned[4] = .route(route)
        }
        let snapshot = MeshSnapshot.compute(service: "web", version: 42, stored: versioned, registered: registered, dependencies: nil)
        let decoded = try MeshSnapshot.decode(json: snapshot.json)
        #expect(decoded.service == "web")
        #expect(decoded.version == 42)
        #expect(decoded.resources == snapshot.resources)
    }

    @Test func aSnapshotTheSidecarCannotReadIsRefusedWhole() {
        #expect(throws: ConfigError.self) { try MeshSnapshot.decode(json: #"{"service":"web","version":"x","resources":[]}"#) }
        #expect(throws: ConfigError.self) { try MeshSnapshot.decode(json: "[1, 2]") }
        let badRoute = #"{"service":"web","version":"3","resources":[{"kind":"Route","service":"p","rules":[{"timeout":"soon"}]}]}"#
        #expect {
            try MeshSnapshot.decode(json: badRoute)
        } throws: { error in
            "\(error)".contains("resources[0]")
        }
    }
}
