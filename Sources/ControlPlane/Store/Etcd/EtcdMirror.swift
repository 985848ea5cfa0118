import Foundation
import NIOCore

/// This replica's copy of everything under the etcd prefix, kept by one watch: what reads are
/// served from (so they need no round trip, and go on while etcd has no quorum), and the
/// revision it is complete up to, which writers wait for to read their own writes.
///
/// Invariants: `revision` only grows, and the entries are exactly etcd's at `revision`; `version`
/// is the revision of the newest change to a key `isVersioned` picks (resources and
/// registrations: what snapshots are made of), or the revision the mirror was loaded at.
/// Thread-safe: the watch applies events on the etcd client's loop while request tasks read.
/// Writers wait for their revision without holding a thread (`wait(for:timeout:on:)` suspends;
/// the watch resumes it).
final class EtcdMirror: @unchecked Sendable {
    /// One key that changed: its new value, or nil if deleted.
    struct Change {
        var key: String
        var kv: EtcdKeyValue?
    }

    private let lock = NSLock()
    private var entries: [String: EtcdKeyValue] = [:]
    private var loadedRevision: Int64 = 0
    private var versionValue: Int64 = 0
    private let isVersioned: @Sendable (String) -> Bool
    /// Writers suspended until `loadedRevision` reaches theirs; resumed (true) by the watch, or
    /// (false) by their timeout, whichever comes first.
    private var waiters: [UInt64: (revision: Int64, continuation: CheckedContinuation<Bool, Never>)] = [:]
    private var nextWaiter: UInt64 = 0

    init(isVersioned: @escaping @Sendable (String) -> Bool) {
        self.isVersioned = isVersioned
    }

    var revision: Int64 { lock.withLock { loadedRevision } }
    var version: Int64 { lock.withLock { versionValue } }

    /// Reads the entries under the lock.
    func read<T>(_ body: ([String: EtcdKeyValue]) throws -> T) rethrows -> T {
        try lock.withLock { try body(entries) }
    }

    func entry(_ key: String) -> EtcdKeyValue? {
        lock.withLock { entries[key] }
    }

    /// Replaces everything with a fresh read at `revision` (start, or after a compaction made the
    /// watch lose its place); returns what differs from before, so no change is skipped.
    func load(_ kvs: [EtcdKeyValue], revision: Int64) -> [Change] {
        let (changes, reached) = lock.withLock { () -> ([Change], [CheckedContinuation<Bool, Never>]) in
            let fresh = Dictionary(kvs.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
            var changes: [Change] = []
            for (key, kv) in fresh where entries[key] != kv { changes.append(Change(key: key, kv: kv)) }
            for key in entries.keys where fresh[key] == nil { changes.append(Change(key: key, kv: nil)) }
            entries = fresh
            loadedRevision = max(loadedRevision, revision)
            // A reload moves the version even if nothing differs: cheap, and never stale.
            versionValue = max(versionValue, revision)
            return (changes, takeSatisfiedWaiters())
        }
        for continuation in reached { continuation.resume(returning: true) }
        return changes
    }

    /// Applies one watch message's events (in revision order).
    func apply(_ events: [EtcdWatchMessage.Event], progress: Int64) -> [Change] {
        let (changes, reached) = lock.withLock { () -> ([Change], [CheckedContinuation<Bool, Never>]) in
            var changes: [Change] = []
            for event in events {
                let key = event.kv.key
                if event.isDelete {
                    guard entries.removeValue(forKey: key) != nil else { continue }
                    changes.append(Change(key: key, kv: nil))
                } else {
                    entries[key] = event.kv
                    changes.append(Change(key: key, kv: event.kv))
                }
                if isVersioned(key) { versionValue = max(versionValue, event.kv.modRevision) }
            }
            let newest = events.map(\.kv.modRevision).max() ?? progress
            loadedRevision = max(loadedRevision, newest)
            return (changes, takeSatisfiedWaiters())
        }
        for continuation in reached { continuation.resume(returning: true) }
        return changes
    }

    /// The waiters `loadedRevision` now satisfies, removed (under the lock; resumed outside it).
    private func takeSatisfiedWaiters() -> [CheckedContinuation<Bool, Never>] {
        guard !waiters.isEmpty else { return [] }
        let done = waiters.filter { $0.value.revision <= loadedRevision }
        for id in done.keys { waiters.removeValue(forKey: id) }
        return done.values.map(\.continuation)
    }

    /// Suspends until the mirror holds `revision` (a write of ours came back through the watch),
    /// or `timeout` passed (false); the timer runs on `loop`. Holds no thread while it waits.
    @discardableResult
    func wait(for revision: Int64, timeout: TimeAmount, on loop: any EventLoop) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let id: UInt64? = lock.withLock {
                guard loadedRevision < revision else { return nil }
                nextWaiter += 1
                waiters[nextWaiter] = (revision, continuation)
                return nextWaiter
            }
            guard let id else {
                continuation.resume(returning: true)
                return
            }
            loop.scheduleTask(in: timeout) {
                let expired = self.lock.withLock { self.waiters.removeValue(forKey: id) }
                expired?.continuation.resume(returning: false)
            }
        }
    }
}
