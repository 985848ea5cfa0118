@testable import ControlPlane
import NIOCore
import Testing

/// The distributor's decisions without tasks or time: who waits, who is answered at once, who
/// a publication wakes and with which snapshot.
@Suite struct WatchStateMachineTests {
    typealias Machine = WatchStateMachine<Int>

    func snapshot(_ service: String, _ version: Int64) -> PublishedSnapshot {
        PublishedSnapshot(service: service, version: version, body: ByteBuffer(string: "\(service)@\(version)\n"))
    }

    /// Runs one publication of the latest version, computing the asked services at `version`.
    func publish(_ machine: inout Machine, at version: Int64) -> Machine.Wake? {
        guard case .compute(let services) = machine.publish() else { return nil }
        return machine.published(services.map { snapshot($0, version) })
    }

    /// A web watcher at version 1, version 2 stored, the debounce fired: web's snapshot is
    /// being computed.
    func computingVersion2() -> Machine {
        var machine = Machine(version: 1)
        _ = machine.watch(id: 1, service: "web", version: 1, waiter: 1)
        _ = machine.changed(version: 2)
        #expect(machine.publish() == .compute(services: ["web"]))
        return machine
    }

    @Test func aThousandWatchersWakeOnceEachWithTheirServicesSnapshot() {
        var machine = Machine(version: 5)
        for id in 0..<1000 {
            guard case .wait = machine.watch(id: id, service: "svc-\(id % 10)", version: 5, waiter: id) else {
                Issue.record("watcher \(id) at the latest version must wait")
                return
            }
        }
        #expect(machine.watcherCount == 1000)
        #expect(machine.changed(version: 6) == .startDebounce)
        #expect(machine.changed(version: 7) == .none, "one debounce for the burst")
        #expect(machine.publish() == .compute(services: (0..<10).map { "svc-\($0)" }), "once per service, not per watcher")
        let wake = machine.published((0..<10).map { snapshot("svc-\($0)", 7) })
        #expect(wake.waiters.count == 1000)
        #expect(Set(wake.waiters.map(\.waiter)) == Set(0..<1000), "every watcher exactly once")
        for (waiter, sent) in wake.waiters {
            #expect(sent == snapshot("svc-\(waiter % 10)", 7))
        }
        #expect(!wake.startDebounce)
        #expect(machine.watcherCount == 0)
        #expect(machine.publishedVersion == 7)
    }

    @Test func aWatcherBehindIsAnsweredAtOnceWithTheCurrentSnapshot() {
        var machine = Machine(version: 1)
        guard case .wait = machine.watch(id: 1, service: "web", version: 1, waiter: 1) else {
            Issue.record("at the latest version: wait")
            return
        }
        _ = machine.changed(version: 2)
        // Debouncing: version 2 is not published yet, so a watcher behind gets it computed.
        guard case .compute = machine.watch(id: 2, service: "web", version: 1, waiter: 2) else {
            Issue.record("behind while debouncing: compute now")
            return
        }
        _ = publish(&machine, at: 2)
        guard case .answer(let sent) = machine.watch(id: 3, service: "web", version: 1, waiter: 3) else {
            Issue.record("behind after the publication: the published snapshot at once")
            return
        }
        #expect(sent == snapshot("web", 2))
        guard case .answer = machine.watch(id: 4, service: "web", version: nil, waiter: 4) else {
            Issue.record("no version held: at once")
            return
        }
        guard case .compute = machine.watch(id: 5, service: "payments", version: 1, waiter: 5) else {
            Issue.record("a service nobody watched when it was published: compute")
            return
        }
        guard case .answer(snapshot("web", 2)) = machine.watch(id: 6, service: "web", version: 9, waiter: 6) else {
            Issue.record("ahead (the control plane restarted with less history): the current one at once")
            return
        }
        #expect(machine.watcherCount == 0)
    }

    @Test func aWatcherAtThePublishedVersionKeepsWaiting() {
        var machine = Machine(version: 1)
        _ = machine.changed(version: 2)
        // It computed version 2 while the publication was debounced: 2 is no news to it.
        guard case .wait = machine.watch(id: 1, service: "web", version: 2, waiter: 1) else {
            Issue.record("holds the latest: wait")
            return
        }
        #expect(machine.publish() == .none, "nobody behind: nothing to compute")
        #expect(machine.publishedVersion == 2)
        #expect(machine.watcherCount == 1)
        _ = machine.changed(version: 3)
        #expect(publish(&machine, at: 3)?.waiters.map(\.waiter) == [1])
    }

    @Test func aChangeAfterTheSnapshotsWereComputedIsPublishedNext() {
        var machine = computingVersion2()
        #expect(machine.changed(version: 3) == .none, "one publication at a time")
        let wake = machine.published([snapshot("web", 2)])
        #expect(wake.waiters.map(\.waiter) == [1])
        #expect(wake.startDebounce, "version 3 is still to go out")
        // Version 2 is published but 3 is the latest: a watcher at 2 is answered at once.
        guard case .compute = machine.watch(id: 2, service: "web", version: 2, waiter: 2) else {
            Issue.record("behind the latest: at once")
            return
        }
        _ = machine.watch(id: 3, service: "web", version: 3, waiter: 3)
        #expect(machine.publish() == .none, "the only watcher holds 3 already")
        #expect(machine.publishedVersion == 3)
        #expect(machine.watcherCount == 1)
    }

    @Test func snapshotsComputedAtANewerVersionWakeEveryoneBehindIt() {
        var machine = computingVersion2()
        // While the snapshots are computed, a payments sidecar that holds 2 starts waiting...
        guard case .wait = machine.watch(id: 2, service: "payments", version: 2, waiter: 2) else {
            Issue.record("holds the latest: wait")
            return
        }
        // ...then version 3 is stored before the source reads, so it computes at 3.
        _ = machine.changed(version: 3)
        let wake = machine.published([snapshot("web", 3)])
        #expect(!wake.startDebounce, "the snapshots already carry 3")
        let sent = Dictionary(uniqueKeysWithValues: wake.waiters.map { ($0.waiter, $0.snapshot) })
        #expect(sent.count == 2)
        #expect(sent[1] == snapshot("web", 3))
        #expect(sent[2] == .some(nil), "payments was not computed: that watch computes its own")
        #expect(machine.publishedVersion == 3)
    }

    @Test func aWatcherOfAServiceNotComputedWakesToComputeItsOwn() {
        var machine = computingVersion2()
        // The source could not compute it (store error, source gone).
        let wake = machine.published([])
        #expect(wake.waiters.count == 1)
        #expect(wake.waiters.first?.snapshot == nil)
        #expect(machine.publishedVersion == 2)
    }

    @Test func aRemovedWatcherIsGoneAndRemovedOnce() {
        var machine = Machine(version: 1)
        _ = machine.watch(id: 1, service: "web", version: 1, waiter: 10)
        _ = machine.watch(id: 2, service: "web", version: 1, waiter: 20)
        #expect(machine.remove(id: 1) == 10)
        #expect(machine.remove(id: 1) == nil, "a timeout after a cancel resumes nothing")
        #expect(machine.watcherCount == 1)
        _ = machine.changed(version: 2)
        #expect(publish(&machine, at: 2)?.waiters.map(\.waiter) == [20])
        #expect(machine.remove(id: 2) == nil, "already woken")
    }
}
