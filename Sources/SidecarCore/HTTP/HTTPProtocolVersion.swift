/// The two HTTP versions this framing layer speaks on the wire.
///
/// Any other `HTTP/x.y` is refused with 505; anything not shaped like a version with 400.
public enum HTTPProtocolVersion: Sendable, Hashable {
    case http1_0
    case http1_1

    /// The version as it appears on the wire.
    public var text: String {
        switch self {
        case .http1_0: return "HTTP/1.0"
        case .http1_1: return "HTTP/1.1"
        }
    }
}
