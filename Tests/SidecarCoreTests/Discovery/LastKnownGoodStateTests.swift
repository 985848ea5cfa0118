import Foundation
import MeshAPI
import MeshTestSupport
import SidecarCore
import Testing

@testable import SidecarDiscovery

/// The fail-static state file: what round-trips, and every way a file is refused (corrupt,
/// truncated, foreign service or trust domain, expired) before anything of it is used.
@Suite struct LastKnownGoodStateTests {
    static let now: Int64 = 1_800_000_000

    static func state(service: String = "web", trustDomain: String = "mesh.local") -> LastKnownGoodState {
        let snapshot = MeshSnapshot(service: service, version: 42, resources: [
            .instance(Instance(service: "payments", address: "127.0.0.1", port: 16006, labels: ["version": "v1"])),
        ])
        return LastKnownGoodState(
            service: service, trustDomain: trustDomain, snapshot: snapshot,
            certificatePEM: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            keyPEM: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            bundlePEM: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n", expiresAt: now + 3600)
    }

    static func decode(_ bytes: [UInt8], service: String = "web", trustDomain: String = "mesh.local", now: Int64 = now)
        throws(LastKnownGoodState.Refusal) -> LastKnownGoodState
    {
        try LastKnownGoodState.decode(bytes, service: service, trustDomain: trustDomain, now: now)
    }

    @Test func aStateRoundTrips() throws {
        let state = Self.state()
        #expect(try Self.decode(state.encoded()) == state)
    }

    @Test func aTruncatedFileIsCorrupt() {
        let bytes = Self.state().encoded()
        for length in [0, 10, bytes.count / 2, bytes.count - 1] {
            #expect {
                _ = try Self.decode(Array(bytes.prefix(length)))
            } throws: { error in
                guard case .corrupt = error as? LastKnownGoodState.Refusal else { return false }
                return true
            }
        }
    }

    @Test func anAlteredOrForeignFormatFileIsCorrupt() {
        var bytes = Self.state().encoded()
        let index = bytes.count - 20
        bytes[index] = bytes[index] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(throws: LastKnownGoodState.Refusal.self) { try Self.decode(bytes) }
        if case .corrupt(let detail)? = Self.refusal(bytes) {
            #expect(detail.contains("checksum"))
        } else {
            Issue.record("an altered byte must be refused as corrupt")
        }
        #expect(Self.isCorrupt(Array("not a state file".utf8)))
        #expect(Self.isCorrupt(Array("{\"service\":\"web\"}\n".utf8)))
    }

    @Test func anotherServicesOrTrustDomainsStateIsForeign() {
        let bytes = Self.state().encoded()
        guard case .foreign(let service)? = Self.refusal(bytes, service: "payments") else {
            Issue.record("another service's state must be foreign")
            return
        }
        #expect(service.contains("\"web\"") && service.contains("\"payments\""))
        guard case .foreign(let domain)? = Self.refusal(bytes, trustDomain: "other.example") else {
            Issue.record("another trust domain's state must be foreign")
            return
        }
        #expect(domain.contains("mesh.local") && domain.contains("other.example"))
        // A file naming this service around another service's snapshot is foreign too.
        var mixed = Self.state()
        mixed.snapshot.service = "payments"
        #expect({ if case .foreign? = Self.refusal(mixed.encoded()) { true } else { false } }())
    }

    @Test func aStateWhoseCertificateExpiredIsRefused() {
        let bytes = Self.state().encoded()
        #expect(Self.refusal(bytes, now: Self.now + 3600) == .expired(expiresAt: Self.now + 3600))
        #expect(Self.refusal(bytes, now: Self.now + 3599) == nil)
    }

    @Test func theStoreWritesAPrivateFileAtomically() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let store = LastKnownGoodStore(directory: directory.path + "/state", service: "web")
        #expect(try store.load() == nil)
        var state = Self.state()
        try store.save(state)
        state.snapshot.version = 43
        try store.save(state)
        let loaded = try #require(try store.load())
        #expect(try Self.decode(loaded).snapshot.version == 43)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let directoryAttributes = try FileManager.default.attributesOfItem(atPath: store.directory)
        #expect((directoryAttributes[.posixPermissions] as? Int) == 0o700)
        // No temp file is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.directory) == ["web.state"])
    }

    static func refusal(
        _ bytes: [UInt8], service: String = "web", trustDomain: String = "mesh.local", now: Int64 = now
    ) -> LastKnownGoodState.Refusal? {
        do {
            _ = try decode(bytes, service: service, trustDomain: trustDomain, now: now)
            return nil
        } catch {
            return error
        }
    }

    static func isCorrupt(_ bytes: [UInt8]) -> Bool {
        if case .corrupt? = refusal(bytes) { return true }
        return false
    }
}

/// What the control-plane agent does with each snapshot: apply, ignore, refuse once, go live.
@Suite struct SnapshotFollowStateMachineTests {
    static func snapshot(_ version: Int64) -> MeshSnapshot { MeshSnapshot(service: "web", version: version, resources: []) }

    @Test func aNewVersionIsAppliedAndTheSameOneIgnored() {
        var machine = SnapshotFollowStateMachine(appliedVersion: 3, source: .live)
        #expect(machine.received(Self.snapshot(3)) == .ignore)
        #expect(machine.received(Self.snapshot(4)) == .apply(Self.snapshot(4)))
        machine.applied(version: 4)
        #expect(machine.appliedVersion == 4)
        #expect(machine.watchVersions == (4, nil))
    }

    @Test func aRefusedVersionIsCountedOnceKeptForTheHeartbeatAndClearedByTheNextApplied() {
        var machine = SnapshotFollowStateMachine(appliedVersion: 3, source: .live)
        let rejection = SnapshotRejection(version: 5, reason: "no")
        #expect(machine.received(Self.snapshot(5)) == .apply(Self.snapshot(5)))
        #expect(machine.refused(rejection) == .countAndLog(rejection))
        #expect(machine.appliedVersion == 3)
        #expect(machine.rejection == rejection)
        #expect(machine.watchVersions == (3, 5))
        // Sent again: not tried again, not counted again.
        #expect(machine.received(Self.snapshot(5)) == .ignore)
        #expect(machine.refused(rejection) == .alreadyCounted)
        // A later snapshot that applies clears it.
        #expect(machine.received(Self.snapshot(6)) == .apply(Self.snapshot(6)))
        machine.applied(version: 6)
        #expect(machine.rejection == nil)
        #expect(machine.watchVersions == (6, nil))
    }

    @Test func aFailStaticStartGoesLiveOnTheFirstAnswerAndStaysLive() {
        var machine = SnapshotFollowStateMachine(appliedVersion: 3, source: .lastKnownGood)
        #expect(machine.source == .lastKnownGood)
        #expect(machine.controlPlaneAnswered() == .goLive)
        #expect(machine.source == .live)
        #expect(machine.controlPlaneAnswered() == .none)
    }
}
