/// How long a sidecar waits before calling an unreachable control plane again: exponential
/// from `base` to `cap`, jittered over its upper half (so a thousand sidecars do not return together),
/// back to `base` after a success. A pure value; randomness is injected.
struct ReconnectBackoff: Sendable {
    let base: Duration
    let cap: Duration
    private(set) var failures = 0

    init(base: Duration = .milliseconds(250), cap: Duration = .seconds(10)) {
        self.base = base
        self.cap = cap
    }

    /// The wait after one more failure: uniform in [c/2, c] for c = min(cap, base × 2^failures).
    mutating func next(using random: inout some RandomNumberGenerator) -> Duration {
        let ceiling = min(cap, base * (1 << min(failures, 20)))
        failures += 1
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: (nanoseconds / 2)...max(nanoseconds / 2, nanoseconds), using: &random))
    }

    mutating func reset() { failures = 0 }
}
