/// The decisions of one API connection, one request at a time, without I/O:
/// `APIServerHandler` feeds it the request's parts, the router's admission and its timers,
/// and carries out the `Action` each returns.
///
/// Invariants:
/// - Nothing of a body is kept before the router admitted the head (route and credentials
///   checked): while it decides, reads are held, so at most what one socket read brought
///   with the head is waiting.
/// - A kept body never exceeds `maxBodySize`, and every kept byte was first reserved from the
///   server-wide budget (`body(count:reserved:)` says whether that worked).
/// - A body that does not end within its deadline (armed at the head) is answered 408.
/// - Every answer sent before the whole request arrived announces `connection: close`; the rest
///   of the body is then read and dropped (never kept), up to `maxDrainBytes` and the drain
///   deadline, so the client can read the answer before the connection closes: closing with
///   unread bytes would reset it.
struct APIConnectionStateMachine {
    struct Limits: Sendable {
        var maxBodySize: Int
        /// How much of a refused body is read and dropped before closing anyway.
        var maxDrainBytes: Int
    }

    enum State: Equatable {
        case idle
        /// The head is in and the router is deciding; reads are held.
        case admitting(declaredLength: Int?, bodyBytes: Int, ended: Bool)
        case receiving(bodyBytes: Int)
        /// The whole request is in; the router is answering it.
        case responding
        /// An answer went out before the whole request came in: dropping the rest, then closing.
        case draining(dropped: Int)
        /// An answer went out after the whole request came in: close once it is written.
        case closing
        case closed
    }

    /// Answers the connection makes itself, before the router has the whole request.
    enum Refusal: Equatable {
        /// The router's own refusal of the head (401, 403, 404, 405).
        case notAdmitted
        /// 413: declared or received body over `maxBodySize`.
        case tooLarge
        /// 408: the body did not end within its deadline.
        case tooSlow
        /// 503: the server-wide budget of buffered body bytes is spent.
        case busy
    }

    enum Action: Equatable {
        case none
        /// Ask the router about the head; hold reads; arm the body deadline.
        case admit
        /// Admitted with more body to come: release reads.
        case readBody
        /// Append this chunk to the body (its bytes are reserved).
        case keepBody
        /// Drop this chunk.
        case dropBody
        /// The request is whole and admitted: have the router answer it.
        case dispatch
        /// Send this answer with `connection: close`, then drain the rest of the request
        /// (`drain`) or close once it is written.
        case refuse(Refusal, drain: Bool)
        case close
    }

    let limits: Limits
    private(set) var state = State.idle

    init(limits: Limits) {
        self.limits = limits
    }

    /// Reads wait while the router decides about a head.
    var holdsReads: Bool {
        if case .admitting = state { return true }
        return false
    }

    mutating func head(declaredLength: Int?) -> Action {
        guard case .idle = state else { return .none }  // NIO's pipelining assistance holds the next head back
        state = .admitting(declaredLength: declaredLength, bodyBytes: 0, ended: false)
        return .admit
    }

    mutating func admitted(_ accepted: Bool) -> Action {
        guard case .admitting(let declared, let bytes, let ended) = state else { return .none }  // answered meanwhile (408, 413)
        guard accepted else { return refuse(.notAdmitted, ended: ended) }
        if let declared, declared > limits.maxBodySize { return refuse(.tooLarge, ended: ended) }
        if ended {
            state = .responding
            return .dispatch
        }
        state = .receiving(bodyBytes: bytes)
        return .readBody
    }

    /// - Parameter reserved: whether the server-wide budget had room for these bytes.
    mutating func body(count: Int, reserved: Bool) -> Action {
        switch state {
        case .admitting(_, let bytes, _), .receiving(let bytes):
            if bytes + count > limits.maxBodySize { return refuse(.tooLarge, ended: false) }
            if !reserved { return refuse(.busy, ended: false) }
            if case .admitting(let declared, _, let ended) = state {
                state = .admitting(declaredLength: declared, bodyBytes: bytes + count, ended: ended)
            } else {
                state = .receiving(bodyBytes: bytes + count)
            }
            return .keepBody
        case .draining(let dropped):
            guard dropped + count <= limits.maxDrainBytes else {
                state = .closed
                return .close
            }
            state = .draining(dropped: dropped + count)
            return .dropBody
        case .idle, .responding, .closing, .closed:
            return .dropBody
        }
    }

    mutating func end() -> Action {
        switch state {
        case .admitting(let declared, let bytes, _):
            state = .admitting(declaredLength: declared, bodyBytes: bytes, ended: true)
            return .none
        case .receiving:
            state = .responding
            return .dispatch
        case .draining:
            state = .closed
            return .close
        case .idle, .responding, .closing, .closed:
            return .none
        }
    }

    /// The body deadline armed at `head` passed.
    mutating func bodyDeadlinePassed() -> Action {
        switch state {
        case .admitting(_, _, false), .receiving:
            return refuse(.tooSlow, ended: false)
        case .admitting(_, _, true), .idle, .responding, .draining, .closing, .closed:
            // A whole request the router is still deciding about or answering is not slow.
            return .none
        }
    }

    /// The drain deadline armed with a refusal passed.
    mutating func drainDeadlinePassed() -> Action {
        guard case .draining = state else { return .none }
        state = .closed
        return .close
    }

    /// The router's answer to a dispatched request was written.
    mutating func responseSent(keepAlive: Bool) -> Action {
        switch state {
        case .responding:
            state = keepAlive ? .idle : .closed
            return keepAlive ? .none : .close
        case .closing:
            state = .closed
            return .close
        case .idle, .admitting, .receiving, .draining, .closed:
            return .none
        }
    }

    mutating func closed() {
        state = .closed
    }

    private mutating func refuse(_ refusal: Refusal, ended: Bool) -> Action {
        state = ended ? .closing : .draining(dropped: 0)
        return .refuse(refusal, drain: !ended)
    }
}
