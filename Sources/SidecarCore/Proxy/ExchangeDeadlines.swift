import NIOCore

/// The clocks one exchange runs under, and the decision of what a timer firing means. Pure:
/// the handler keeps one lazy timer per connection at `nextDue` and carries out `expiry`.
///
/// - `route`: the rule's `timeout`, over every try (504 `timeout`);
/// - `currentTry`: the try's `perTryTimeout`, from the whole request having gone upstream
///   until the response head (the try is dropped and retried where the policy allows);
/// - `bodyProgress`: when request body bytes last moved; a caller whose body sends nothing
///   for `bodyIdle` while the sidecar is reading it gets 408 (slowloris on the body).
struct ExchangeDeadlines: Equatable {
    var route: NIODeadline?
    var currentTry: NIODeadline?
    var bodyProgress: NIODeadline

    /// What a timer firing at some instant finds.
    enum Expiry: Equatable {
        /// Nothing is due yet (the timer re-arms at `nextDue`).
        case none
        /// The route timeout passed: end the exchange.
        case route
        /// The request body stalled while it was being read: 408 and close.
        case bodyStalled
        /// The body's idle time passed while the sidecar was not reading it (connecting, or
        /// the upstream full): not the caller's pause, the clock restarts now.
        case bodyWaitNotTheCallers
        /// The try's per-try timeout passed before its response head: retry or 504.
        case currentTry
    }

    init(bodyProgress: NIODeadline) {
        self.bodyProgress = bodyProgress
    }

    /// The earliest instant something can expire, nil when nothing runs.
    func nextDue(requestComplete: Bool, bodyIdle: TimeAmount) -> NIODeadline? {
        var due = route
        if let currentTry, due.map({ currentTry < $0 }) ?? true { due = currentTry }
        if !requestComplete {
            let bodyDue = bodyProgress + bodyIdle
            if due.map({ bodyDue < $0 }) ?? true { due = bodyDue }
        }
        return due
    }

    /// What expired at `now`, the route first (it ends everything), then the body, then the try.
    func expiry(
        at now: NIODeadline, requestComplete: Bool, bodyIdle: TimeAmount, readingBody: Bool, responseStarted: Bool
    ) -> Expiry {
        if let route, route <= now { return .route }
        if !requestComplete, bodyProgress + bodyIdle <= now { return readingBody ? .bodyStalled : .bodyWaitNotTheCallers }
        if let currentTry, currentTry <= now, !responseStarted { return .currentTry }
        return .none
    }

    /// The exchange ended (or its response started streaming): no clock runs any more.
    mutating func stop() {
        route = nil
        currentTry = nil
    }
}
