import ControlPlane
import MeshTestSupport
import NIOCore
import SidecarCore
import Synchronization
import Testing

/// The distributor with real tasks and a fake source: one computation per service for any
/// number of watchers, answers at once when behind, timeouts, cancelled watches.
@Suite struct SnapshotDistributorTests {
    @Test func aThousandWatchersAllGetTheNextVersionOnceFromOneComputationPerService() async {
        let metrics = ControlPlaneMetrics()
        let source = FakeSource(version: 5)
        let distributor = SnapshotDistributor(version: 5, debounce: .milliseconds(1), metrics: metrics)
        distributor.attach(source)
        await withTaskGroup(of: (Int, SnapshotDistributor.WatchResult).self) { group in
            for index in 0..<1000 {
                group.addTask {
                    (index, await distributor.watch(service: "svc-\(index % 10)", knownVersion: 5, timeout: .seconds(60)))
                }
            }
            #expect(await eventually { metrics.watchers == 1000 })
            source.version.withLock { $0 = 6 }
            distributor.changed(version: 6)
            var results: [Int: SnapshotDistributor.WatchResult] = [:]
            for await (index, result) in group { results[index] = result }
            #expect(results.count == 1000)
            for (index, result) in results {
                #expect(result == .snapshot(FakeSource.snapshot("svc-\(index % 10)", 6)))
            }
        }
        #expect(metrics.watchers == 0)
        #expect(source.calls.withLock { $0 } == [(0..<10).map { "svc-\($0)" }], "one computation per service")
        #expect(distributor.publishedVersion == 6)
    }

    @Test func aWatcherWithAnOldVersionGetsTheCurrentOneAtOnce() async {
        let source = FakeSource(version: 2)
        let metrics = ControlPlaneMetrics()
        let distributor = SnapshotDistributor(version: 2, debounce: .milliseconds(1), metrics: metrics)
        distributor.attach(source)
        // Nothing published since start: the watcher computes the current snapshot itself.
        #expect(await distributor.watch(service: "web", knownVersion: 1, timeout: .seconds(60)) == .changed)
        #expect(await distributor.watch(service: "web", knownVersion: nil, timeout: .seconds(60)) == .changed)
        async let waiting = distributor.watch(service: "web", knownVersion: 2, timeout: .seconds(60))
        #expect(await eventually { metrics.watchers == 1 })
        source.version.withLock { $0 = 3 }
        distributor.changed(version: 3)
        #expect(await waiting == .snapshot(FakeSource.snapshot("web", 3)))
        // Published now: a watcher behind gets the published bytes without a computation.
        #expect(await distributor.watch(service: "web", knownVersion: 2, timeout: .seconds(60)) == .snapshot(FakeSource.snapshot("web", 3)))
        #expect(source.calls.withLock { $0.count } == 1)
    }

    @Test func timesOutUnchangedAndStopsCounting() async {
        let metrics = ControlPlaneMetrics()
        let distributor = SnapshotDistributor(version: 5, metrics: metrics)
        #expect(await distributor.watch(service: "web", knownVersion: 5, timeout: .milliseconds(50)) == .timedOut)
        #expect(metrics.watchers == 0)
    }

    @Test func aCancelledWatcherIsRemovedAtOnce() async {
        let metrics = ControlPlaneMetrics()
        let distributor = SnapshotDistributor(version: 5, metrics: metrics)
        let watch = Task { await distributor.watch(service: "web", knownVersion: 5, timeout: .seconds(60)) }
        #expect(await eventually { metrics.watchers == 1 })
        watch.cancel()
        #expect(await watch.value == .timedOut)
        #expect(metrics.watchers == 0)
        // Already cancelled when it starts: never counted.
        let late = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await distributor.watch(service: "web", knownVersion: 5, timeout: .seconds(60))
        }
        #expect(await late.value == .timedOut)
        #expect(metrics.watchers == 0)
    }

    @Test func aBurstIsOnePublication() async {
        let source = FakeSource(version: 0)
        let metrics = ControlPlaneMetrics()
        let distributor = SnapshotDistributor(version: 0, debounce: .milliseconds(30), metrics: metrics)
        distributor.attach(source)
        async let woke = distributor.watch(service: "web", knownVersion: 0, timeout: .seconds(60))
        #expect(await eventually { metrics.watchers == 1 })
        source.version.withLock { $0 = 5 }
        for version in 1...5 { distributor.changed(version: Int64(version)) }
        #expect(distributor.publishedVersion == 0, "debounced")
        #expect(await woke == .snapshot(FakeSource.snapshot("web", 5)))
        #expect(distributor.publishedVersion == 5)
        #expect(source.calls.withLock { $0.count } == 1)
    }
}

/// Snapshots named after their service and version; records what it was asked for.
final class FakeSource: SnapshotSource {
    let version: Mutex<Int64>
    let calls = Mutex<[[String]]>([])

    init(version: Int64) { self.version = Mutex(version) }

    static func snapshot(_ service: String, _ version: Int64) -> PublishedSnapshot {
        PublishedSnapshot(service: service, version: version, body: ByteBuffer(string: "\(service)@\(version)\n"))
    }

    func publishedSnapshots(of services: [String]) async -> [PublishedSnapshot] {
        calls.withLock { $0.append(services) }
        let version = version.withLock { $0 }
        return services.map { Self.snapshot($0, version) }
    }
}
