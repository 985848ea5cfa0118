import Foundation

/// This replica's copy of everything under the etcd prefix, kept by one watch: what reads are
/// served from (so they need no round trip, and go on while etcd has no quorum), and the
/// revision it is complete up to, which writers wait for to read their own writes.
///
/// Invariants: `revision` only grows, and the entries are exactly etcd's at `revision`; `version`
/// is the revision of the newest change to a key `isVersioned` picks (resources and
/// registrations: what snapshots are made of), or the revision the mirror was loaded at.
/// Thread-safe: the watch applies events on the etcd client's loop while request threads read.
final class EtcdMirror: @unchecked Sendable {
    /// One key that changed: its new value, or nil if deleted.
    struct Change {
        var key: String
        var kv: EtcdKeyValue?
    }

    private let condition = NSCondition()
    private var entries: [String: EtcdKeyValue] = [:]
    private var loadedRevision: Int64 = 0
    private var versionValue: Int64 = 0
    private let isVersioned: @Sendable (String) -> Bool

    init(isVersioned: @escaping @Sendable (String) -> Bool) {
        self.isVersioned = isVersioned
    }

    var revision: Int64 { condition.withLock { loadedRevision } }
    var version: Int64 { condition.withLock { versionValue } }

    /// Reads the entries under the lock.
    func read<T>(_ body: ([String: EtcdKeyValue]) throws -> T) rethrows -> T {
        try condition.withLock { try body(entries) }
    }

    func entry(_ key: String) -> EtcdKeyValue? {
        condition.withLock { entries[key] }
    }

    /// Replaces everything with a fresh read at `revision` (start, or after a compaction made the
    /// watch lose its place); returns what differs from before, so no change is skipped.
    func load(_ kvs: [EtcdKeyValue], revision: Int64) -> [Change] {
        condition.withLock {
            let fresh = Dictionary(kvs.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
            var changes: [Change] = []
            for (key, kv) in fresh where entries[key] != kv { changes.append(Change(key: key, kv: kv)) }
            for key in entries.keys where fresh[key] == nil { changes.append(Change(key: key, kv: nil)) }
            entries = fresh
            loadedRevision = max(loadedRevision, revision)
            // A reload moves the version even if nothing differs: cheap, and never stale.
            versionValue = max(versionValue, revision)
            condition.broadcast()
            return changes
        }
    }

    /// Applies one watch message's events (in revision order).
    func apply(_ events: [EtcdWatchMessage.Event], progress: Int64) -> [Change] {
        condition.withLock {
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
            condition.broadcast()
            return changes
        }
    }

    /// Waits until the mirror holds `revision` (a write of ours came back through the watch).
    @discardableResult
    func wait(for revision: Int64, timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while loadedRevision < revision {
            guard condition.wait(until: deadline) else { return loadedRevision >= revision }
        }
        return true
    }
}
