/// Whether one request is copied to a rule's mirror subset: true for `mirror.percent` of
/// requests. The copy is fire-and-forget (its response is discarded and never retried); the
/// proxy also skips it when the body was not buffered (over `RetryStateMachine.maxReplayBodyBytes`),
/// since a mirror needs its own copy of the body (`MirrorExchange` sends it).
///
/// Decided once per request, before the lease, with injected randomness.
public enum MirrorDecision {
    public static func shouldMirror(_ mirror: TrafficMirror?, using rng: inout some RandomNumberGenerator) -> Bool {
        guard let mirror else { return false }
        return PercentDraw.fires(mirror.percent, using: &rng)
    }
}
