/// The TLS contexts a sidecar's new connections take, one per role, all made from one workload
/// identity and swapped together: `server` for the inbound (ALPN `h2`, `http/1.1` and
/// `mesh-tcp`), `client` for outbound HTTP/1.1, `http2Client` for outbound HTTP/2 (`h2`),
/// `tunnel` for outbound TCP tunnels (`mesh-tcp`). Each role is a
/// `TLSContextStore`, so an open connection keeps the context (and certificate) it started with.
///
/// `ConfigApplier` is the one writer: it builds a whole `Contexts` off to the side, checked to
/// carry this service's SPIFFE ID, and only then replaces all three.
public final class TLSContextSet: Sendable {
    public let server: TLSContextStore
    public let client: TLSContextStore
    public let tunnel: TLSContextStore
    public let http2Client: TLSContextStore

    /// One identity's four contexts: built and checked, not yet in use.
    public struct Contexts: Sendable {
        public let server: TLSContext
        public let client: TLSContext
        public let tunnel: TLSContext
        public let http2Client: TLSContext

        /// The contexts for `identity`, refused unless its certificate is this service's SPIFFE ID.
        public init(_ configuration: SidecarConfiguration, identity: SidecarIdentity) throws {
            var tls = TLSConfiguration.mesh(
                certificateChain: identity.certificateChain, privateKey: identity.privateKey,
                trustRoots: identity.trustBundle, trustDomain: configuration.trustDomain)
            client = try TLSContext(configuration: tls, role: .client)
            // An HTTP/2 caller's streams go HTTP/2 end to end; a peer that only speaks HTTP/1.1
            // would pick that (and the stream fails as a reset: every sidecar of this build speaks h2).
            tls.alpnProtocols = ["h2", "http/1.1"]
            http2Client = try TLSContext(configuration: tls, role: .client)
            // The inbound speaks HTTP/2 or HTTP/1.1, or carries raw bytes when the caller asks for `mesh-tcp`.
            tls.alpnProtocols = ["h2", "http/1.1", HTTPProxyHandler.tunnelALPN]
            server = try TLSContext(configuration: tls, role: .server)
            tls.alpnProtocols = [HTTPProxyHandler.tunnelALPN]
            tunnel = try TLSContext(configuration: tls, role: .client)
            let expected = SPIFFEID.service(configuration.service, trustDomain: configuration.trustDomain)
            let presented = server.leafCertificate?.spiffeID
            guard presented == expected else {
                throw Sidecar.StartupError(description: "\(identity.certificateChain.displayName): the certificate carries \(presented?.description ?? "no SPIFFE ID"), but this sidecar is \(expected?.description ?? configuration.service)")
            }
        }

        /// `sidecar_cert_expiry_timestamp_seconds`: the leaf's notAfter, Unix seconds.
        var certificateExpiry: Int64 { server.certificateExpiry ?? 0 }
    }

    init(_ contexts: Contexts) {
        server = TLSContextStore(contexts.server)
        client = TLSContextStore(contexts.client)
        tunnel = TLSContextStore(contexts.tunnel)
        http2Client = TLSContextStore(contexts.http2Client)
    }

    /// New connections of every role take `contexts` from now on.
    func replace(with contexts: Contexts) {
        server.replace(with: contexts.server)
        client.replace(with: contexts.client)
        tunnel.replace(with: contexts.tunnel)
        http2Client.replace(with: contexts.http2Client)
    }
}
