@testable import SidecarDiscovery
import Testing

/// How long a sidecar waits between calls to an unreachable control plane.
@Suite struct ReconnectBackoffTests {
    @Test func growsFromBaseToCapWithinTheUpperHalfAndResetsAfterASuccess() {
        var backoff = ReconnectBackoff(base: .milliseconds(250), cap: .seconds(10))
        var random = SeededRandom(seed: 7)
        var ceilings: [Duration] = []
        for _ in 0..<10 {
            let ceiling = min(.seconds(10), .milliseconds(250) * (1 << backoff.failures))
            let wait = backoff.next(using: &random)
            #expect(wait >= ceiling / 2 && wait <= ceiling, "\(wait) outside [\(ceiling / 2), \(ceiling)]")
            ceilings.append(ceiling)
        }
        #expect(ceilings.first == .milliseconds(250))
        #expect(ceilings.last == .seconds(10))
        backoff.reset()
        #expect(backoff.next(using: &random) <= .milliseconds(250))
    }

    @Test func manyFailuresNeitherOverflowNorExceedTheCap() {
        var backoff = ReconnectBackoff(base: .seconds(1), cap: .seconds(60))
        var random = SeededRandom(seed: 1)
        for _ in 0..<200 { #expect(backoff.next(using: &random) <= .seconds(60)) }
    }
}
