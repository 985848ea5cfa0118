import ControlPlane
import Foundation
import MeshTestSupport
import SidecarCore
import Testing

/// The SQLite store: one global version, optimistic concurrency, durability across reopen.
@Suite struct ResourceStoreTests {
    let directory = TemporaryDirectory()
    var path: String { directory.path + "/mesh.sqlite" }

    @Test func versionsAreGlobalAndMonotonic() async throws {
        defer { directory.remove() }
        let store = try SQLiteResourceStore(path: path)
        let first = try store.apply([.service(MeshService(name: "a")), .service(MeshService(name: "b"))])
        #expect(first.map(\.resourceVersion) == ["1", "2"])
        let second = try store.apply([.service(MeshService(name: "a", port: 80))])
        #expect(second.map(\.resourceVersion) == ["3"])
        try store.delete(kind: .service, name: "b")
        #expect(try store.currentVersion() == 4)
        #expect(try await store.bumpVersion() == 5)
    }

    @Test func unchangedResourceKeepsItsVersion() throws {
        defer { directory.remove() }
        let store = try SQLiteResourceStore(path: path)
        _ = try store.apply([.service(MeshService(name: "a"))])
        let again = try store.apply([.service(MeshService(name: "a"))])
        #expect(again.first?.resourceVersion == "1")
        #expect(try store.currentVersion() == 1)
    }

    @Test func optimisticConcurrency() throws {
        defer { directory.remove() }
        let store = try SQLiteResourceStore(path: path)
        _ = try store.apply([.service(MeshService(name: "a"))])
        // Matching version: accepted.
        let updated = try store.apply([.service(MeshService(name: "a", resourceVersion: "1", port: 80))])
        #expect(updated.first?.resourceVersion == "2")
        // Stale version: refused, nothing changes.
        #expect(throws: StoreError.self) {
            try store.apply([.service(MeshService(name: "a", resourceVersion: "1", port: 81))])
        }
        #expect(try store.get(kind: .service, name: "a") == .service(MeshService(name: "a", resourceVersion: "2", port: 80)))
        // A version for something that does not exist: refused.
        do {
            _ = try store.apply([.service(MeshService(name: "new", resourceVersion: "7"))])
            Issue.record("expected a conflict")
        } catch {
            guard case .conflict(let message) = error else { Issue.record("wrong error \(error)"); return }
            #expect(message.contains("does not exist"))
        }
        // Without a version: overwrites.
        _ = try store.apply([.service(MeshService(name: "a", port: 81))])
        #expect(try store.currentVersion() == 3)
    }

    @Test func dataSurvivesReopen() throws {
        defer { directory.remove() }
        do {
            let store = try SQLiteResourceStore(path: path)
            _ = try store.apply([.instance(Instance(service: "payments", address: "10.0.0.1", port: 8080, labels: ["v": "1"]))])
            try store.saveJoinToken(JoinToken(secretHash: "abc", service: "web", expiresAt: 4_000_000_000))
        }
        let reopened = try SQLiteResourceStore(path: path)
        #expect(try reopened.list(kind: .instance).first?.name == "payments-10.0.0.1-8080")
        #expect(try reopened.joinToken(secretHash: "abc")?.service == "web")
        #expect(try reopened.currentVersion() == 1)
    }

    @Test func deletingAMissingResourceIsNotFound() throws {
        defer { directory.remove() }
        let store = try SQLiteResourceStore(path: path)
        #expect(throws: StoreError.notFound("Route \"x\" not found")) { try store.delete(kind: .route, name: "x") }
    }

    @Test func registrationsSurviveAReopenAndTheControlPlaneRestartsWithThem() async throws {
        defer { directory.remove() }
        let web = Instance(service: "web", address: "10.0.0.1", port: 15006, labels: ["version": "v2"])
        let payments = Instance(service: "payments", address: "10.0.0.2", port: 15006)
        do {
            let store = try SQLiteResourceStore(path: path)
            #expect(try store.recordRegistryChange(
                saving: [Registration(instance: web, dependencies: ["payments", "ledger"]), Registration(instance: payments, dependencies: nil)],
                removing: []) == 1)
            #expect(try store.recordRegistryChange(saving: [], removing: [payments.name]) == 2)
        }
        let reopened = try SQLiteResourceStore(path: path)
        #expect(try reopened.registrations() == [Registration(instance: web, dependencies: ["payments", "ledger"])])
        #expect(try reopened.currentVersion() == 2)

        // A control plane over that store knows the instance at once (healthy, full TTL).
        let authority = try CertificateAuthority.create(trustDomain: "mesh.local")
        let controlPlane = try MeshControlPlane(store: reopened, authority: authority, adminToken: "t")
        #expect(await controlPlane.registeredInstances.map(\.name) == [web.name])
        // Deregistering removes the saved registration too.
        try await controlPlane.deregister(.init(name: web.name), principal: .admin)
        #expect(try reopened.registrations().isEmpty)
    }
}
