/// Inbound user events `TLSHandler` fires for later handlers.
public enum TLSEvent: Sendable, Equatable {
    /// The handshake finished and the peer was accepted: who the peer is, what was negotiated.
    case handshakeCompleted(TLSHandshakeInfo)
    /// The peer sent close_notify: a clean end of the stream (we answer and close).
    case closeNotifyReceived
}
