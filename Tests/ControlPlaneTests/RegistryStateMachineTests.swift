import ControlPlane
import SidecarCore
import Testing

/// TTL and grace decisions with a manual clock: no sleeping.
@Suite struct RegistryStateMachineTests {
    let start = ContinuousClock.now
    let web = Instance(service: "web", address: "10.0.0.1", port: 15006)

    func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    @Test func missedTTLMarksUnhealthyThenGraceRemoves() {
        var machine = RegistryStateMachine(settings: .init(ttl: .seconds(15), grace: .seconds(60)))
        #expect(machine.register(web, dependencies: nil, now: at(0)) == [.added(name: web.name)])
        #expect(machine.tick(now: at(14)) == [])
        #expect(machine.tick(now: at(15)) == [.becameUnhealthy(name: web.name)])
        #expect(machine.instances.first?.health == .unhealthy)
        #expect(machine.tick(now: at(30)) == [], "unhealthy is reported once")
        #expect(machine.tick(now: at(75)) == [.removed(name: web.name)])
        #expect(machine.instances.isEmpty)
        #expect(machine.heartbeat(name: web.name, appliedVersion: nil, now: at(76)) == .unknownInstance)
    }

    @Test func aHeartbeatReportsTheRefusedSnapshotUntilALaterOneApplies() {
        var machine = RegistryStateMachine(settings: .init(ttl: .seconds(15), grace: .seconds(60)))
        _ = machine.register(web, dependencies: nil, now: at(0))
        let refused = RegistryStateMachine.Rejection(version: 5, reason: "AuthorizationPolicy web: allow[0] …")
        #expect(machine.heartbeat(name: web.name, appliedVersion: 4, rejection: refused, now: at(5)) == .accepted([]))
        #expect(machine.entries[web.name]?.appliedVersion == 4)
        #expect(machine.entries[web.name]?.rejection == refused)
        // A watch acknowledgement keeps it; the next heartbeat without one clears it.
        machine.acknowledge(name: web.name, appliedVersion: 4)
        #expect(machine.entries[web.name]?.rejection == refused)
        #expect(machine.heartbeat(name: web.name, appliedVersion: 6, now: at(10)) == .accepted([]))
        #expect(machine.entries[web.name]?.rejection == nil)
    }

    /// Found by bench/propagation.sh: a heartbeat built before a snapshot applied and answered
    /// after the watch acknowledged it showed the proxy stale for a heartbeat period (5 s).
    @Test func aLateHeartbeatDoesNotTakeBackAWatchAcknowledgement() {
        var machine = RegistryStateMachine(settings: .init(ttl: .seconds(15), grace: .seconds(60)))
        _ = machine.register(web, dependencies: nil, now: at(0))
        #expect(machine.heartbeat(name: web.name, appliedVersion: 4, now: at(1)) == .accepted([]))
        machine.acknowledge(name: web.name, appliedVersion: 5)
        #expect(machine.heartbeat(name: web.name, appliedVersion: 4, now: at(2)) == .accepted([]))
        #expect(machine.entries[web.name]?.appliedVersion == 5)
        // The watch reports what the sidecar runs, older too (a restart from saved state).
        machine.acknowledge(name: web.name, appliedVersion: 3)
        #expect(machine.entries[web.name]?.appliedVersion == 3)
    }

    @Test func heartbeatKeepsAliveAndRevives() {
        var machine = RegistryStateMachine(settings: .init(ttl: .seconds(15), grace: .seconds(60)))
        _ = machine.register(web, dependencies: ["payments"], now: at(0))
        #expect(machine.heartbeat(name: web.name, appliedVersion: 3, now: at(10)) == .accepted([]))
        #expect(machine.tick(now: at(20)) == [], "the heartbeat at 10 s holds until 25 s")
        #expect(machine.tick(now: at(25)) == [.becameUnhealthy(name: web.name)])
        #expect(machine.heartbeat(name: web.name, appliedVersion: 4, now: at(30)) == .accepted([.becameHealthy(name: web.name)]))
        #expect(machine.entries[web.name]?.appliedVersion == 4)
        #expect(machine.entries[web.name]?.dependencies == ["payments"])
        #expect(machine.tick(now: at(44)) == [])
    }

    @Test func healthSetByASharedStoreMovesOnlyOnAChange() {
        var machine = RegistryStateMachine(settings: .init(ttl: .seconds(15), grace: .seconds(60)))
        _ = machine.register(web, dependencies: nil, now: at(0))
        #expect(machine.setHealth(name: web.name, healthy: true) == [])
        #expect(machine.setHealth(name: web.name, healthy: false) == [.becameUnhealthy(name: web.name)])
        #expect(machine.setHealth(name: web.name, healthy: false) == [])
        #expect(machine.instances.first?.health == .unhealthy)
        #expect(machine.setHealth(name: web.name, healthy: true) == [.becameHealthy(name: web.name)])
        #expect(machine.setHealth(name: "nobody", healthy: false) == [])
    }

    @Test func deregistrationRemovesAtOnce() {
        var machine = RegistryStateMachine()
        _ = machine.register(web, dependencies: nil, now: at(0))
        #expect(machine.deregister(name: web.name) == [.removed(name: web.name)])
        #expect(machine.deregister(name: web.name) == [])
        #expect(machine.instances.isEmpty)
    }

    @Test func reRegisteringTheSameInstanceChangesNothing() {
        var machine = RegistryStateMachine()
        _ = machine.register(web, dependencies: nil, now: at(0))
        #expect(machine.register(web, dependencies: nil, now: at(5)) == [])
        var relabelled = web
        relabelled.labels = ["version": "v2"]
        #expect(machine.register(relabelled, dependencies: nil, now: at(6)) == [.added(name: web.name)])
    }
}

/// Operator-applied Instances with `ttl`: unhealthy when not re-applied in time, then deleted.
@Suite struct InstanceLeaseTests {
    @Test func appliedInstanceWithTTLLapsesThenIsDeleted() async throws {
        let fixture = try ControlPlaneFixture(settings: .init(ttl: .seconds(15), grace: .seconds(10)))
        defer { fixture.remove() }
        let yaml = "kind: Instance\nservice: payments\naddress: 10.0.0.1\nport: 80\nttl: 5s\n"
        let start = ContinuousClock.now
        #expect(await fixture.request("POST", "/v1/apply", body: yaml).status == 200)
        let name = "payments-10.0.0.1-80"
        await fixture.controlPlane.tick(now: start + .seconds(4))
        #expect(try health(fixture, name) == .healthy)
        await fixture.controlPlane.tick(now: start + .seconds(6))
        #expect(try health(fixture, name) == .unhealthy)
        #expect(try fixture.store.currentVersion() == 2, "the health change is a new version")
        await fixture.controlPlane.tick(now: start + .seconds(16))
        #expect(try fixture.store.get(kind: .instance, name: name) == nil)

        // Without ttl, an applied instance stays.
        _ = await fixture.request("POST", "/v1/apply", body: "kind: Instance\nservice: payments\naddress: 10.0.0.2\nport: 80\n")
        await fixture.controlPlane.tick(now: start + .seconds(3600))
        #expect(try health(fixture, "payments-10.0.0.2-80") == .healthy)
    }

    func health(_ fixture: ControlPlaneFixture, _ name: String) throws -> Instance.Health? {
        guard case .instance(let instance)? = try fixture.store.get(kind: .instance, name: name) else { return nil }
        return instance.health
    }
}
