/// The lifecycle of one TLS connection as a pure state machine: `TLSHandler` reports what
/// happened and carries out the returned action. No I/O, no OpenSSL, tested on its own.
///
/// idle → handshaking → active → closing → closed, with `failed` reachable from every state
/// before `closed`. Writes before `active` are buffered; after `closing` they fail.
struct TLSHandlerStateMachine {
    enum State: Equatable {
        case idle
        case handshaking
        case active
        case closing
        case closed
        case failed
    }

    enum StartAction: Equatable {
        case startHandshake
        case none
    }

    enum WriteAction: Equatable {
        case buffer
        case encrypt
        case failClosed
    }

    enum HandshakeCompletedAction: Equatable {
        /// Tell later handlers, then encrypt and send what was buffered.
        case announceAndFlushBuffered
        case none
    }

    enum CloseAction: Equatable {
        /// Queue close_notify, send it, then close the transport.
        case sendCloseNotifyThenClose
        /// Nothing was established: close the transport at once.
        case closeTransport
        /// A close is already in progress or done.
        case alreadyClosing
    }

    enum CloseNotifyAction: Equatable {
        /// Answer with our own close_notify, tell later handlers, close the transport.
        case replyAndClose
        case none
    }

    enum FailureAction: Equatable {
        /// Send any pending alert, report the error, close.
        case reportAndClose
        case none
    }

    enum InactiveAction: Equatable {
        /// The peer went away mid-handshake: report it as a handshake failure.
        case reportHandshakeInterrupted
        case none
    }

    private(set) var state: State = .idle

    mutating func channelActive() -> StartAction {
        guard state == .idle else { return .none }
        state = .handshaking
        return .startHandshake
    }

    func write() -> WriteAction {
        switch state {
        case .idle, .handshaking: return .buffer
        case .active: return .encrypt
        case .closing, .closed, .failed: return .failClosed
        }
    }

    var acceptsCiphertext: Bool { state == .handshaking || state == .active }

    mutating func handshakeCompleted() -> HandshakeCompletedAction {
        guard state == .handshaking else { return .none }
        state = .active
        return .announceAndFlushBuffered
    }

    mutating func failed() -> FailureAction {
        switch state {
        case .closed, .failed: return .none
        default:
            state = .failed
            return .reportAndClose
        }
    }

    /// Whether the handshake timer firing now should fail the connection (it then calls `failed()`).
    func handshakeTimedOut() -> FailureAction {
        state == .handshaking || state == .idle ? .reportAndClose : .none
    }

    mutating func closeRequested() -> CloseAction {
        switch state {
        case .active:
            state = .closing
            return .sendCloseNotifyThenClose
        case .idle, .handshaking:
            state = .closing
            return .closeTransport
        case .closing, .closed, .failed:
            return .alreadyClosing
        }
    }

    mutating func closeNotifyReceived() -> CloseNotifyAction {
        guard state == .active else { return .none }
        state = .closing
        return .replyAndClose
    }

    mutating func channelInactive() -> InactiveAction {
        let wasHandshaking = state == .handshaking
        state = .closed
        return wasHandshaking ? .reportHandshakeInterrupted : .none
    }
}
