import NIOCore

/// What a route rule's fault injection does to one request: wait `delay` first (if set),
/// then answer `abortStatus` with `x-mesh-error: fault-injected` instead of forwarding (if
/// set). Delay and abort are drawn independently, each with its own percent, as Envoy's
/// fault filter does; an aborted request is delayed first when both fire.
///
/// Decided once per request, before the lease, with injected randomness; a plain value.
public struct FaultInjectionDecision: Sendable, Equatable {
    public var delay: TimeAmount?
    public var abortStatus: Int?

    public static let noFault = FaultInjectionDecision(delay: nil, abortStatus: nil)

    public init(delay: TimeAmount?, abortStatus: Int?) {
        self.delay = delay
        self.abortStatus = abortStatus
    }

    public var isNone: Bool { delay == nil && abortStatus == nil }

    /// Draws the faults for one request (two draws at most; none when `fault` is nil).
    public static func decide(
        _ fault: FaultInjection?, using rng: inout some RandomNumberGenerator
    ) -> FaultInjectionDecision {
        guard let fault else { return .noFault }
        var decision = FaultInjectionDecision.noFault
        if let delay = fault.delay, PercentDraw.fires(delay.percent, using: &rng) {
            decision.delay = delay.duration.timeAmount
        }
        if let abort = fault.abort, PercentDraw.fires(abort.percent, using: &rng) {
            decision.abortStatus = abort.status
        }
        return decision
    }
}

/// A Bernoulli draw for config shares written as percents (0–100).
enum PercentDraw {
    /// True with probability `percent / 100`; never for ≤ 0, always for ≥ 100, no draw then.
    static func fires(_ percent: Double, using rng: inout some RandomNumberGenerator) -> Bool {
        if percent <= 0 { return false }
        if percent >= 100 { return true }
        return Double.random(in: 0..<100, using: &rng) < percent
    }
}
