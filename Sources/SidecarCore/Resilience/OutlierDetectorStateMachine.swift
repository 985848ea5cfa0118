import NIOCore

/// Passive outlier detection for one destination, with Envoy's meaning: it watches the
/// outcome of every try to each endpoint and ejects an endpoint from balancing after
/// `consecutive5xx` 5xx results in a row, or `consecutiveGatewayErrors` gateway errors
/// (502/503/504, connect failure, reset, timeout) in a row.
///
/// Choices (Envoy's):
/// - Ejection happens on the event that reaches the threshold, not at the next interval, so
///   a broken endpoint stops taking traffic at once. The `interval` timer (`tick`) un-ejects
///   endpoints whose time has passed and, for endpoints not ejected, lowers their ejection
///   multiplier by one (a host that stayed healthy earns back shorter ejections). The proxy
///   may also schedule `tick` at `nextUnejection` for exact ejection times.
/// - An ejection lasts `baseEjectionTime × ejections` (1st 30 s, 2nd 60 s, ...), capped at
///   `maxEjectionTime` (Envoy's default 300 s, or the base when that is larger).
/// - At most `maxEjectionPercent` of the endpoints are ejected at once, but one endpoint may
///   always be ejected when none is (Envoy ≥ 1.21): with 3 endpoints and 10 % one can be
///   ejected. A failure over the cap keeps its count and ejects as soon as room frees.
/// - Panic: when fewer than `panicThresholdPercent` (50 %) of the endpoints are un-ejected,
///   `isPanicking` is true and the balancer ignores ejections (uses all endpoints), as Envoy's
///   healthy panic threshold does; this also covers a single endpoint being ejected.
/// - A success (any status below 500) resets the 5xx count; anything that is not a gateway
///   error resets the gateway-error count (a 500 resets it, but counts as 5xx).
///
/// A pure value, generic over the endpoint key (the proxy uses `HostPort`); time is a
/// parameter. One per destination per event loop (no locks): each loop counts the outcomes
/// of the tries it carried, and an ejection on one loop is adopted by the others
/// (`adoptEjection`); `record` does not allocate
/// (the endpoint map is built by `setEndpoints`), `tick` returns the few un-ejections.
public struct OutlierDetectorStateMachine<Endpoint: Hashable & Sendable>: Sendable {
    /// The result of one try to an endpoint.
    public enum Outcome: Sendable, Equatable {
        /// A response head with this status.
        case status(Int)
        /// Connect (or mTLS) to the endpoint failed or timed out.
        case connectFailure
        /// The endpoint closed before a full response.
        case reset
        /// No response head within the try's timeout.
        case timeout
    }

    public enum Action: Sendable, Equatable {
        /// Count `sidecar_outlier_ejections_total`, move the endpoint to `ejected` in
        /// `sidecar_endpoints`, and stop picking it until `until` (unless panicking).
        case eject(Endpoint, until: NIODeadline)
        /// Back to `healthy` in `sidecar_endpoints`; the balancer may pick it again.
        case uneject(Endpoint)
    }

    struct EndpointState: Sendable {
        var consecutive5xx = 0
        var consecutiveGatewayErrors = 0
        var ejections = 0
        var ejectedUntil: NIODeadline?

        var isFailing: Bool { consecutive5xx > 0 || consecutiveGatewayErrors > 0 }
    }

    public private(set) var config: OutlierDetection
    public let maxEjectionTime: TimeAmount
    public let panicThresholdPercent: Double
    private(set) var endpoints: [Endpoint: EndpointState] = [:]
    public private(set) var ejectedCount = 0
    /// Endpoints with a failure streak running (either consecutive count above zero): while
    /// none has, a success changes nothing and is recorded without looking its endpoint up.
    private var failingCount = 0

    public init(
        _ config: OutlierDetection, endpoints: [Endpoint] = [],
        maxEjectionTime: TimeAmount = .seconds(300),
        panicThresholdPercent: Double = 50
    ) {
        self.config = config
        self.maxEjectionTime = Swift.max(maxEjectionTime, config.baseEjectionTime.timeAmount)
        self.panicThresholdPercent = panicThresholdPercent
        _ = setEndpoints(endpoints)
    }

    /// New thresholds from a config snapshot; counts, ejections and their end times are kept
    /// (a current ejection ends when it was due; the next one uses the new base time).
    public mutating func setConfig(_ config: OutlierDetection) {
        self.config = config
    }

    public var endpointCount: Int { endpoints.count }
    public var healthyCount: Int { endpoints.count - ejectedCount }

    /// Replaces the endpoint set (a new config snapshot): kept endpoints keep their counts and
    /// ejections, new ones start clean. Returns `.uneject` for removed endpoints that were
    /// ejected, so the `ejected` gauge goes down (the proxy then drops them from its totals).
    public mutating func setEndpoints(_ new: some Sequence<Endpoint>) -> [Action] {
        var next: [Endpoint: EndpointState] = [:]
        for endpoint in new { next[endpoint] = endpoints[endpoint] ?? EndpointState() }
        var actions: [Action] = []
        for (endpoint, state) in endpoints where state.ejectedUntil != nil && next[endpoint] == nil {
            actions.append(.uneject(endpoint))
        }
        endpoints = next
        ejectedCount = next.values.reduce(0) { $0 + ($1.ejectedUntil == nil ? 0 : 1) }
        failingCount = next.values.reduce(0) { $0 + ($1.isFailing ? 1 : 0) }
        return actions
    }

    /// Whether the balancer should skip `endpoint` (false while panicking).
    public func shouldSkip(_ endpoint: Endpoint) -> Bool {
        isEjected(endpoint) && !isPanicking
    }

    public func isEjected(_ endpoint: Endpoint) -> Bool { endpoints[endpoint]?.ejectedUntil != nil }

    /// Fewer than `panicThresholdPercent` of the endpoints are un-ejected: use them all.
    public var isPanicking: Bool {
        guard !endpoints.isEmpty, ejectedCount > 0 else { return false }
        return Double(healthyCount) * 100 < panicThresholdPercent * Double(endpoints.count)
    }

    /// How many times `endpoint` has been ejected (its ejection-time multiplier).
    public func ejections(_ endpoint: Endpoint) -> Int { endpoints[endpoint]?.ejections ?? 0 }

    /// The earliest time an ejected endpoint is due back, to schedule `tick` exactly.
    public var nextUnejection: NIODeadline? {
        endpoints.values.lazy.compactMap(\.ejectedUntil).min()
    }

    /// Records one try's outcome; returns `.eject` when it crossed a threshold and the cap
    /// allows. Outcomes for unknown or already ejected endpoints are ignored.
    public mutating func record(_ outcome: Outcome, for endpoint: Endpoint, now: NIODeadline) -> Action? {
        let is5xx: Bool
        let isGatewayError: Bool
        switch outcome {
        case .status(let code):
            is5xx = code >= 500
            isGatewayError = code == 502 || code == 503 || code == 504
        case .connectFailure, .reset, .timeout:
            // Locally originated errors count as both, as Envoy does without split origins.
            is5xx = true
            isGatewayError = true
        }
        if !is5xx && !isGatewayError && failingCount == 0 { return nil }  // every streak is at zero already
        guard var state = endpoints[endpoint], state.ejectedUntil == nil else { return nil }
        let wasFailing = state.isFailing
        state.consecutive5xx = is5xx ? state.consecutive5xx + 1 : 0
        state.consecutiveGatewayErrors = isGatewayError ? state.consecutiveGatewayErrors + 1 : 0
        var action: Action?
        let tripped =
            (config.consecutive5xx > 0 && state.consecutive5xx >= config.consecutive5xx)
            || (config.consecutiveGatewayErrors > 0 && state.consecutiveGatewayErrors >= config.consecutiveGatewayErrors)
        if tripped && mayEjectAnother {
            state.ejections += 1
            let duration = ejectionTime(forEjection: state.ejections)
            let until = now + duration
            state.ejectedUntil = until
            state.consecutive5xx = 0
            state.consecutiveGatewayErrors = 0
            ejectedCount += 1
            action = .eject(endpoint, until: until)
        }
        failingCount += (state.isFailing ? 1 : 0) - (wasFailing ? 1 : 0)
        endpoints[endpoint] = state
        return action
    }

    /// Another event loop's detector ejected `endpoint` until `until`: this one follows (the
    /// share cap was checked there), so every loop stops picking it and its ejection count,
    /// the multiplier of the next ejection time, stays in step. Nil if already ejected here.
    public mutating func adoptEjection(of endpoint: Endpoint, until: NIODeadline) -> Action? {
        guard var state = endpoints[endpoint], state.ejectedUntil == nil else { return nil }
        if state.isFailing { failingCount -= 1 }
        state.ejections += 1
        state.ejectedUntil = until
        state.consecutive5xx = 0
        state.consecutiveGatewayErrors = 0
        endpoints[endpoint] = state
        ejectedCount += 1
        return .eject(endpoint, until: until)
    }

    /// `baseEjectionTime × ejection`, capped at `maxEjectionTime`.
    public func ejectionTime(forEjection ejection: Int) -> TimeAmount {
        let base = config.baseEjectionTime.nanoseconds
        let (product, overflow) = base.multipliedReportingOverflow(by: Int64(Swift.max(1, ejection)))
        return overflow ? maxEjectionTime : Swift.min(.nanoseconds(product), maxEjectionTime)
    }

    /// One more ejection stays within `maxEjectionPercent`, or none is ejected yet.
    private var mayEjectAnother: Bool {
        guard !endpoints.isEmpty else { return false }
        if ejectedCount == 0 { return true }
        return Double(ejectedCount + 1) * 100 <= config.maxEjectionPercent * Double(endpoints.count)
    }

    /// The interval timer (every `config.interval`, or at `nextUnejection`): un-ejects the
    /// endpoints whose time has come; on an interval tick also decays the ejection multiplier
    /// of endpoints that are not ejected.
    public mutating func tick(now: NIODeadline, isIntervalTick: Bool = true) -> [Action] {
        var actions: [Action] = []
        for (endpoint, var state) in endpoints {
            if let until = state.ejectedUntil {
                guard until <= now else { continue }
                state.ejectedUntil = nil
                ejectedCount -= 1
                actions.append(.uneject(endpoint))
            } else if isIntervalTick, state.ejections > 0 {
                state.ejections -= 1
            } else {
                continue
            }
            endpoints[endpoint] = state
        }
        return actions
    }
}
