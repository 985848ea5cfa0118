import NIOCore

/// What an `HTTP2StreamClock` calls when a deadline it holds has passed.
protocol HTTP2DeadlineOwner: AnyObject {
    func deadlinePassed()
}

/// One lazy timer per HTTP/2 connection for the deadlines of its streams (route timeout,
/// `grpc-timeout`, per-try timeout). A NIO timer per stream costs a scheduled task each, and NIO
/// cancels one by a linear search of the loop's timer heap (hundreds of entries with 100 streams
/// per connection, twice per request); here a stream's deadline is an entry in a table, and the
/// connection's one timer is armed at the earliest. The timer is not moved when that stream ends
/// first: it fires, finds nothing due and re-arms at the earliest left (a few times a second at
/// most, as deadlines are hundreds of milliseconds away).
///
/// Each owner has at most one deadline; `schedule` replaces it, `cancel` drops it. The owner is
/// told once, after its entry is gone (it may schedule again). Event-loop bound.
final class HTTP2StreamClock {
    private let eventLoop: EventLoop
    private var due: [ObjectIdentifier: (deadline: NIODeadline, owner: any HTTP2DeadlineOwner)] = [:]
    private var timer: Scheduled<Void>?
    private var firesAt: NIODeadline?

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Deadlines held (tests).
    var count: Int { due.count }

    func schedule(_ owner: any HTTP2DeadlineOwner, at deadline: NIODeadline) {
        due[ObjectIdentifier(owner)] = (deadline, owner)
        if let firesAt, firesAt <= deadline { return }
        arm(deadline)
    }

    func cancel(_ owner: any HTTP2DeadlineOwner) {
        due[ObjectIdentifier(owner)] = nil
    }

    private func arm(_ deadline: NIODeadline) {
        timer?.cancel()
        firesAt = deadline
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.fire()
        }
    }

    private func fire() {
        timer = nil
        firesAt = nil
        let now = eventLoop.now
        var passed: [any HTTP2DeadlineOwner] = []
        var next: NIODeadline?
        for entry in due.values {
            if entry.deadline <= now {
                passed.append(entry.owner)
            } else if next.map({ entry.deadline < $0 }) ?? true {
                next = entry.deadline
            }
        }
        for owner in passed { due[ObjectIdentifier(owner)] = nil }
        if let next { arm(next) }
        for owner in passed { owner.deadlinePassed() }
    }
}
