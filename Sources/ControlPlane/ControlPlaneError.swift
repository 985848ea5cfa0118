import SidecarCore

/// Why `MeshControlPlane` refused or failed an operation, in the control plane's own terms:
/// no HTTP here. `APIRouter` alone turns each case into a status and a message (`APIError`),
/// so the same refusal reads the same whichever operation made it.
public enum ControlPlaneError: Error, Sendable, CustomStringConvertible {
    /// A value that breaks a rule: a service name, a ttl, uses, a port, an address, an empty apply.
    case invalid(String)
    /// The resources in an apply body do not parse (YAML/JSON syntax) or do not validate.
    case invalidResources(ConfigError)
    /// No such resource, or no such registered instance.
    case notFound(String)
    /// No credentials, or credentials that are not accepted: an unknown join token, or one that
    /// expired, was revoked or is used up.
    case unauthenticated(String)
    /// A known caller acting for a service other than its own.
    case forbidden(String)
    /// The store refused (a stale version, a missing row) or failed.
    case store(StoreError)
    /// The CA refused the CSR.
    case certificate(CertificateAuthorityError)

    public var description: String {
        switch self {
        case .invalid(let message), .notFound(let message), .unauthenticated(let message), .forbidden(let message):
            message
        case .invalidResources(let error): error.description
        case .store(.storage(let message)): "store failed: \(message)"
        case .store(.unavailable(let message)): "store-unavailable: \(message)"
        case .store(let error): error.description
        case .certificate(let error): error.description
        }
    }
}
