import MeshAPI
import SidecarCore

/// What the control-plane agent does with what its watch brings, as a pure state machine: the
/// agent carries out the returned actions (apply, save to disk, count, log, go live).
///
/// Invariants:
/// - `appliedVersion` is the snapshot in use; it only moves when a snapshot was applied.
/// - A refused snapshot is refused whole: the running one stays, `rejection` holds its version
///   and reason until a later snapshot applies, and each refused version is counted once
///   (the control plane may send it again, the watch then waits past it).
/// - `source` starts `lastKnownGood` after a fail-static start and becomes `live` the first
///   time the control plane answers; it never goes back.
struct SnapshotFollowStateMachine: Sendable, Equatable {
    private(set) var appliedVersion: Int64
    private(set) var rejection: SnapshotRejection?
    private(set) var source: ConfigSource

    enum ReceiveAction: Equatable {
        /// Try it: then report `applied` or `refused`.
        case apply(MeshSnapshot)
        /// The version in use, or the one already refused.
        case ignore
    }

    enum RefuseAction: Equatable {
        /// A version not refused before: count it (`sidecar_config_rejected_total`) and log it.
        case countAndLog(SnapshotRejection)
        case alreadyCounted
    }

    enum AnswerAction: Equatable {
        /// The first answer after a fail-static start: `/ready` says `live` from now on.
        case goLive
        case none
    }

    init(appliedVersion: Int64, source: ConfigSource) {
        self.appliedVersion = appliedVersion
        self.source = source
    }

    /// The watch asks for versions after the applied one and, if the newest was refused,
    /// after that one too (so it waits for a change instead of fetching the refused one again).
    var watchVersions: (known: Int64, rejected: Int64?) { (appliedVersion, rejection?.version) }

    mutating func received(_ snapshot: MeshSnapshot) -> ReceiveAction {
        if snapshot.version == appliedVersion || snapshot.version == rejection?.version { return .ignore }
        return .apply(snapshot)
    }

    /// The snapshot is in use: it is the one to save to disk.
    mutating func applied(version: Int64) {
        appliedVersion = version
        rejection = nil
    }

    mutating func refused(_ rejection: SnapshotRejection) -> RefuseAction {
        defer { self.rejection = rejection }
        return self.rejection == rejection ? .alreadyCounted : .countAndLog(rejection)
    }

    /// Any call the control plane answered (register, heartbeat, watch).
    mutating func controlPlaneAnswered() -> AnswerAction {
        guard source != .live else { return .none }
        source = .live
        return .goLive
    }
}
