/// A SPIFFE ID (`spiffe://<trust-domain>/<path>`), the identity a workload carries as the URI SAN
/// of its X.509 certificate. A mesh workload's ID is `spiffe://<trust-domain>/service/<name>`.
///
/// Parsing follows the SPIFFE ID spec: lower-case trust domain of `[a-z0-9.-_]`, a path of
/// non-empty segments of `[A-Za-z0-9.-_]`, no query, fragment, port or user info.
public struct SPIFFEID: Hashable, Sendable, CustomStringConvertible {
    public let trustDomain: String
    /// The path including its leading `/`, or empty.
    public let path: String

    public static let defaultTrustDomain = "mesh.local"

    public init?(_ uri: String) {
        let scheme = "spiffe://"
        guard uri.hasPrefix(scheme) else { return nil }
        let rest = uri.dropFirst(scheme.count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let domain = rest[..<slash]
        let path = rest[slash...]
        guard Self.isValidTrustDomain(domain), Self.isValidPath(path) else { return nil }
        self.trustDomain = String(domain)
        self.path = String(path)
    }

    /// The identity of a mesh service: `spiffe://<trustDomain>/service/<name>`.
    public static func service(_ name: String, trustDomain: String = defaultTrustDomain) -> SPIFFEID? {
        SPIFFEID("spiffe://\(trustDomain)/service/\(name)")
    }

    /// The identity of the control plane's serving certificate: `spiffe://<trustDomain>/control-plane`.
    /// The CLI and sidecars accept exactly this server before they send a token or a CSR.
    public static func controlPlane(trustDomain: String = defaultTrustDomain) -> SPIFFEID? {
        SPIFFEID("spiffe://\(trustDomain)/control-plane")
    }

    /// The service name when the path is `/service/<name>`, else nil.
    public var serviceName: String? {
        let prefix = "/service/"
        guard path.hasPrefix(prefix) else { return nil }
        let name = path.dropFirst(prefix.count)
        guard !name.isEmpty, !name.contains("/") else { return nil }
        return String(name)
    }

    public var description: String { "spiffe://\(trustDomain)\(path)" }

    public static func isValidTrustDomain(_ domain: Substring) -> Bool {
        guard !domain.isEmpty, domain.utf8.count <= 255 else { return false }
        return domain.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }

    private static func isValidPath(_ path: Substring) -> Bool {
        if path.isEmpty { return true }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        return segments.allSatisfy { segment in
            !segment.isEmpty && segment != "." && segment != ".."
                && segment.utf8.allSatisfy { byte in
                    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                        || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                        || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
                }
        }
    }
}
