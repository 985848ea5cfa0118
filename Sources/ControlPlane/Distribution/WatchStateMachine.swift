/// The long-poll decisions of the `SnapshotDistributor` as a pure value: which watch waits and
/// which is answered at once, when a debounced publication starts, and which waiters a
/// finished publication wakes with which snapshot. No clock, no I/O, no locks: the distributor
/// holds it under its mutex and carries out the returned actions.
///
/// Two versions: `latestVersion`, the newest the control plane reported (`changed`), and
/// `publishedVersion`, the newest whose snapshots went out. A watch that already holds the
/// latest version waits; any other (older, none, or newer after a restart) is answered at
/// once. A publication wakes every waiter below its version in one pass, each with its
/// service's snapshot, computed once per service for all of them.
///
/// `Waiter` is whatever resumes a watch (a continuation in the distributor, a plain value in
/// tests).
struct WatchStateMachine<Waiter> {
    struct Watch {
        var service: String
        var version: Int64
        var waiter: Waiter
    }

    enum WatchAction {
        /// Answer now with this snapshot: the latest version's, already published.
        case answer(PublishedSnapshot)
        /// Answer now with the service's current snapshot, which must be computed first (the
        /// latest version is not published yet, or the service had no watcher when it was).
        case compute
        /// The watch is suspended until a publication wakes it, or `remove` (timeout, cancel).
        case wait
    }

    enum ChangeAction: Equatable {
        /// Start the debounce timer and call `publish()` when it fires.
        case startDebounce
        /// A publication is already on its way; it will take this version along.
        case none
    }

    enum PublishAction: Equatable {
        /// Compute the snapshots of these services (sorted) and hand them to `published`.
        case compute(services: [String])
        /// Nothing to compute: no waiter needs a snapshot.
        case none
    }

    /// What a finished publication wakes: every waiter behind the published version, with its
    /// service's snapshot, or nil for a service that started waiting while the snapshots were
    /// being computed (that watch then computes its own).
    struct Wake {
        var waiters: [(waiter: Waiter, snapshot: PublishedSnapshot?)]
        /// Another change came in meanwhile: start the debounce again.
        var startDebounce: Bool
    }

    private enum Phase: Equatable {
        case idle
        case debouncing
        /// The snapshots for `target` are being computed.
        case publishing(target: Int64)
    }

    private(set) var latestVersion: Int64
    private(set) var publishedVersion: Int64
    private var phase = Phase.idle
    private var watches: [Int: Watch] = [:]
    /// The last publication's snapshots by service (each at `publishedVersion`).
    private var published: [String: PublishedSnapshot] = [:]

    init(version: Int64) {
        latestVersion = version
        publishedVersion = version
    }

    /// Suspended watches.
    var watcherCount: Int { watches.count }

    /// The control plane stored `version` (every store or registry change reports one).
    mutating func changed(version: Int64) -> ChangeAction {
        latestVersion = max(latestVersion, version)
        guard phase == .idle else { return .none }
        phase = .debouncing
        return .startDebounce
    }

    /// A watch of `service` from a sidecar holding `version` (nil: it holds none), to be
    /// resumed through `waiter` when it waits. `id` must be unique among the waiting.
    mutating func watch(id: Int, service: String, version: Int64?, waiter: Waiter) -> WatchAction {
        if version == latestVersion {
            watches[id] = Watch(service: service, version: latestVersion, waiter: waiter)
            return .wait
        }
        if let snapshot = published[service], snapshot.version == latestVersion { return .answer(snapshot) }
        return .compute
    }

    /// Takes a waiting watch out (its timeout passed or its request was cancelled); nil when
    /// it is not waiting any more (a publication already woke it).
    mutating func remove(id: Int) -> Waiter? {
        watches.removeValue(forKey: id)?.waiter
    }

    /// The debounce timer fired: what to compute for the latest version.
    mutating func publish() -> PublishAction {
        precondition(phase == .debouncing, "publish() without a debounce")
        guard latestVersion > publishedVersion else {
            phase = .idle
            return .none
        }
        let latest = latestVersion
        let services = Set(watches.values.lazy.filter { $0.version < latest }.map(\.service))
        guard !services.isEmpty else {
            // Nobody is waiting for it: publishing is only moving the version.
            publishedVersion = latestVersion
            published = [:]
            phase = .idle
            return .none
        }
        phase = .publishing(target: latestVersion)
        return .compute(services: services.sorted())
    }

    /// The snapshots of a `.compute` are ready (each at the version it was computed at, at
    /// least the target): wake every waiter behind them.
    mutating func published(_ snapshots: [PublishedSnapshot]) -> Wake {
        guard case .publishing(let target) = phase else { preconditionFailure("published() without publish()") }
        let version = snapshots.map(\.version).reduce(target, max)
        publishedVersion = max(publishedVersion, version)
        latestVersion = max(latestVersion, publishedVersion)
        published = Dictionary(snapshots.lazy.filter { $0.version == version }.map { ($0.service, $0) }) { first, _ in first }

        var waiters: [(waiter: Waiter, snapshot: PublishedSnapshot?)] = []
        waiters.reserveCapacity(watches.count)
        watches = watches.filter { _, watch in
            guard watch.version < version else { return true }
            waiters.append((watch.waiter, published[watch.service]))
            return false
        }
        let again = latestVersion > publishedVersion
        phase = again ? .debouncing : .idle
        return Wake(waiters: waiters, startDebounce: again)
    }
}
