import Testing

@testable import SidecarCore

/// Sampling from the trace id: every hop decides the same, the share is close to the percent,
/// and an unsampled `traceparent` is never exported.
@Suite struct SpanSamplerTests {
    func trace(_ id: String, flags: String = "01") -> TraceContext {
        TraceContext(traceID: id, spanID: "b7ad6b7169203331", flags: flags)!
    }

    @Test func allAndNoneAndTheCallersFlag() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736"
        #expect(SpanSampler(percent: 100).samples(trace(id)))
        #expect(SpanSampler(percent: 100).samples(trace("ffffffffffffffffffffffffffffffff")))
        #expect(!SpanSampler(percent: 0).samples(trace(id)))
        #expect(!SpanSampler(percent: 100).samples(trace(id, flags: "00")), "the caller did not sample it")
        #expect(SpanSampler(percent: 100).samples(trace(id, flags: "03")))
    }

    @Test func theShareFollowsThePercentAndIsTheSameOnEveryHop() {
        var random = LoopRandom(seed: 7)
        let sampler = SpanSampler(percent: 25)
        var sampled = 0
        for _ in 0..<4000 {
            let next = TraceContext.nextHop(after: nil, using: &random)
            let decision = sampler.samples(next)
            // The next hop (same trace id, new span) decides the same.
            #expect(sampler.samples(TraceContext.nextHop(after: next.traceparent, using: &random)) == decision)
            if decision { sampled += 1 }
        }
        #expect((800...1200).contains(sampled), "\(sampled) of 4000 at 25 %")
    }
}
