/// Which traces are exported: the caller's sampled flag must be on, and the trace id must fall
/// in the configured share. The share is read from the id's last 14 hex digits (56 random
/// bits, as W3C Trace Context level 2 defines them), so every sidecar a trace crosses makes
/// the same choice and a trace is exported whole or not at all.
struct SpanSampler: Sendable, Equatable {
    /// Ids whose low 56 bits are below this are sampled: `percent` of 2^56.
    let threshold: UInt64

    init(percent: Double) {
        let share = min(max(percent, 0), 100) / 100
        threshold = share >= 1 ? 1 << 56 : UInt64(share * Double(UInt64(1) << 56))
    }

    func samples(_ trace: TraceContext) -> Bool {
        guard trace.sampled, threshold > 0 else { return false }
        guard threshold < 1 << 56 else { return true }
        return trace.traceLow & 0x00FF_FFFF_FFFF_FFFF < threshold  // the id's last 14 hex digits
    }
}
