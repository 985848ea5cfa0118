/// Whether the sidecar should get traffic, as `/ready` reports it: 200 `ready`, or 503 with
/// the word for why not.
public enum Readiness: Sendable, Equatable {
    /// Listeners up, configuration and certificate loaded.
    case ready
    /// Not ready yet (still loading configuration or a certificate).
    case notReady
    /// Shutting down: finishing in-flight requests, taking no new ones.
    case draining
}
