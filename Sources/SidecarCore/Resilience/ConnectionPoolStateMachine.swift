import NIOCore

/// The connection limits of one destination on one event loop, with Envoy's meaning of
/// `maxConnections` and `maxPendingRequests`: a request that finds no idle connection opens a
/// new one while fewer than `connectionLimit` are open (idle, busy or connecting); at the cap
/// it waits as *pending* for a connection to come free, in arrival order; when
/// `pendingLimit` requests already wait it is refused at once (503 `circuit-open`).
///
/// Decisions only; `ConnectionPool` carries out the actions (connect, hand a connection
/// over, close one). Freed capacity goes to the oldest waiter: a released connection to the
/// endpoint it wants is handed over as it is; one to another endpoint is closed and its slot
/// used to connect to the waiter's endpoint; a closed connection's slot opens a new one.
///
/// Limits and loops: connections belong to one event loop (no hops on the hot path), so each
/// loop enforces `ceil(limit / loopCount)` of both limits; the process-wide number of
/// connections and waiters is therefore at most the configured limit rounded up to a
/// multiple of the loop count. (`maxRequests` and `maxRetries` are exact, in `CircuitBreaker`.)
///
/// A pure value confined to its loop; a waiter is an integer id the caller maps to its promise.
public struct ConnectionPoolStateMachine<Endpoint: Hashable & Sendable>: Sendable {
    public enum LeaseAction: Sendable, Equatable {
        /// Take an idle connection to the endpoint.
        case useIdle
        /// Open a new connection (its slot is taken).
        case connect
        /// At the cap with idle connections to other endpoints only: close one of them and
        /// open a new connection with its slot.
        case closeIdleAndConnect
        /// Wait for a connection to come free; `id` names the waiter in later actions.
        case wait(id: Int)
        /// Connections and pending requests are both at their limits.
        case reject(CircuitBreaker.Resource)
    }

    public enum FreedAction: Sendable, Equatable {
        /// Nobody waits: keep the released connection idle (or just free the closed slot).
        case none
        /// Give the released connection to waiter `id` (same endpoint).
        case handOver(id: Int)
        /// Close the released connection and connect to `endpoint` for waiter `id` with its slot.
        case closeAndConnect(id: Int, endpoint: Endpoint)
        /// A slot came free by a close: connect to `endpoint` for waiter `id`.
        case connect(id: Int, endpoint: Endpoint)
    }

    public private(set) var connectionLimit: Int
    public private(set) var pendingLimit: Int
    /// Connections holding a slot: connecting, busy or idle.
    public private(set) var open = 0
    private var waiters = CircularBuffer<(id: Int, endpoint: Endpoint)>()
    private var nextID = 0
    private var reportedOpen = false

    public init(_ thresholds: CircuitBreakerThresholds, loopCount: Int = 1) {
        (connectionLimit, pendingLimit) = Self.shares(thresholds, loopCount: loopCount)
    }

    /// New thresholds from a config snapshot; open connections and waiters are kept.
    public mutating func setThresholds(_ thresholds: CircuitBreakerThresholds, loopCount: Int = 1) {
        (connectionLimit, pendingLimit) = Self.shares(thresholds, loopCount: loopCount)
    }

    private static func shares(_ thresholds: CircuitBreakerThresholds, loopCount: Int) -> (Int, Int) {
        let loops = Swift.max(1, loopCount)
        // Rounded up without `limit + loops - 1`, which overflows for a limit near Int.max.
        func share(_ limit: Int) -> Int {
            let limit = Swift.max(0, limit)
            return limit / loops + (limit % loops == 0 ? 0 : 1)
        }
        return (Swift.max(1, share(thresholds.maxConnections)), share(thresholds.maxPendingRequests))
    }

    public var pending: Int { waiters.count }

    /// A request needs a connection to `endpoint`. `idleHere`: an idle connection to it
    /// exists; `idleElsewhere`: an idle connection to another endpoint of the destination does.
    public mutating func lease(_ endpoint: Endpoint, idleHere: Bool, idleElsewhere: Bool) -> LeaseAction {
        if idleHere { return .useIdle }
        if open < connectionLimit {
            open += 1
            return .connect
        }
        if idleElsewhere { return .closeIdleAndConnect }
        guard waiters.count < pendingLimit else { return .reject(.pendingRequests) }
        let id = nextID
        nextID &+= 1
        waiters.append((id, endpoint))
        return .wait(id: id)
    }

    /// A connection to `endpoint` finished a response cleanly and may carry another.
    public mutating func released(_ endpoint: Endpoint) -> FreedAction {
        guard let waiter = waiters.popFirst() else { return .none }
        if waiter.endpoint == endpoint { return .handOver(id: waiter.id) }
        return .closeAndConnect(id: waiter.id, endpoint: waiter.endpoint)
    }

    /// A connection holding a slot closed, or its connect failed.
    public mutating func closed() -> FreedAction {
        if let waiter = waiters.popFirst() { return .connect(id: waiter.id, endpoint: waiter.endpoint) }
        assert(open > 0, "closed more connections than were opened")
        open = Swift.max(0, open - 1)
        return .none
    }

    /// Waiter `id` gave up (its request ended); false if it was already served.
    public mutating func cancel(id: Int) -> Bool {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return false }
        waiters.remove(at: index)
        return true
    }

    /// Pending requests at their limit: the next request without a free connection is refused.
    public var isOpen: Bool { open >= connectionLimit && waiters.count >= pendingLimit }

    /// The new `isOpen` if it changed since the last call, else nil (for the per-peer gauge).
    public mutating func takeOpenChange() -> Bool? {
        let open = isOpen
        guard open != reportedOpen else { return nil }
        reportedOpen = open
        return open
    }
}
