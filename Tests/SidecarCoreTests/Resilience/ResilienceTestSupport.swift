import NIOCore

@testable import SidecarCore

/// A clock the test moves by hand; starts well above zero so "before start" is expressible.
struct ManualClock {
    private(set) var now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    mutating func advance(by amount: TimeAmount) { now = now + amount }
}

/// SplitMix64: deterministic, good enough spread for share tests.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Always returns the largest value: jitter draws hit their ceiling.
struct MaxRandom: RandomNumberGenerator {
    mutating func next() -> UInt64 { .max }
}
