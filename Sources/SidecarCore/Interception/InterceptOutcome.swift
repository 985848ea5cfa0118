/// Where an intercepted connection went: the `outcome` label of
/// `sidecar_intercepted_connections_total`.
enum InterceptOutcome: String, CaseIterable, Sendable {
    /// HTTP to a mesh service, through the outbound HTTP path.
    case meshHTTP = "mesh-http"
    /// Other bytes to a mesh service, as an L4 tunnel over mTLS (ALPN `mesh-tcp`).
    case meshTCP = "mesh-tcp"
    /// A destination outside the mesh, connected to directly (`outbound.unknown: passthrough`).
    case passthrough
    /// A destination outside the mesh, closed (`outbound.unknown: registry-only`).
    case refused
}
