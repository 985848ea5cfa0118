/// Which side of the sidecar a request or connection belongs to, as the `direction` label:
/// `inbound` (mTLS from other sidecars to the local app) or `outbound` (the local app calling out).
public enum TrafficDirection: String, Sendable, CaseIterable {
    case inbound
    case outbound

    /// A dense index for arrays of pre-made series.
    var index: Int { self == .inbound ? 0 : 1 }
}
