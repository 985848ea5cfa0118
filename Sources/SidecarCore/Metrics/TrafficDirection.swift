/// Which side of the sidecar a request or connection belongs to, as the `direction` label:
/// `inbound` (mTLS from other sidecars to the local app), `outbound` (the local app calling
/// out) or `gateway` (external clients through the mesh's front door).
public enum TrafficDirection: String, Sendable, CaseIterable {
    case inbound
    case outbound
    case gateway

    /// A dense index for arrays of pre-made series.
    var index: Int {
        switch self {
        case .inbound: 0
        case .outbound: 1
        case .gateway: 2
        }
    }
}
