import SidecarCore
import ControlPlane
import Testing

/// Waking watchers: only on a version above theirs, debounced, bounded by the timeout.
@Suite struct SnapshotDistributorTests {
    @Test func aPublicationAtOrBelowTheWatchersVersionDoesNotWakeIt() async {
        let metrics = ControlPlaneMetrics()
        let distributor = SnapshotDistributor(version: 0, debounce: .milliseconds(1), metrics: metrics)
        async let woke = distributor.waitForVersion(above: 2, timeout: .seconds(10))
        #expect(await eventually { metrics.watchers == 1 })
        await distributor.changed(version: 2)
        #expect(await eventually { await distributor.publishedVersion == 2 })
        #expect(metrics.watchers == 1, "version 2 is not news to a watcher at 2")
        await distributor.changed(version: 3)
        #expect(await woke)
        #expect(metrics.watchers == 0)
    }

    @Test func timesOutUnchanged() async {
        let distributor = SnapshotDistributor(version: 5, metrics: ControlPlaneMetrics())
        #expect(await distributor.waitForVersion(above: 5, timeout: .milliseconds(50)) == false)
        #expect(await distributor.waitForVersion(above: 4, timeout: .seconds(10)) == true, "behind: at once")
    }

    @Test func aBurstIsOnePublication() async {
        let distributor = SnapshotDistributor(version: 0, debounce: .milliseconds(30), metrics: ControlPlaneMetrics())
        for version in 1...5 { await distributor.changed(version: Int64(version)) }
        #expect(await distributor.publishedVersion == 0, "debounced")
        #expect(await eventually { await distributor.publishedVersion == 5 })
    }
}

private func eventually(_ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return await condition()
}
