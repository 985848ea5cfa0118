/// The TLS server context of the gateway's HTTPS listener, for clients outside the mesh: TLS
/// 1.2 and 1.3, no client certificate asked for, ALPN `h2` then `http/1.1` (`GatewayProtocolSwitch`
/// gives an `h2` connection HTTP/2; no ALPN is HTTP/1.1), and one certificate per
/// `gateway.https.certificates` entry chosen by SNI (the first when the name matches none).
/// The mesh's own contexts (TLS 1.3, mutual) stay for the calls into the mesh.
public enum GatewayTLS {
    public static func configuration(for certificate: GatewayListeners.Certificate) -> TLSConfiguration {
        TLSConfiguration(
            certificateChain: .file(certificate.certificate), privateKey: .file(certificate.privateKey),
            minimumVersion: .tls12, maximumVersion: .tls13, alpnProtocols: ["h2", "http/1.1"],
            certificateVerification: .none, handshakeTimeout: .seconds(10))
    }

    /// Reads every certificate and key (off the event loop); errors name the file.
    public static func serverContext(_ https: GatewayListeners.HTTPS) throws -> TLSContext {
        let all = try https.certificates.map { try TLSContext(configuration: configuration(for: $0), role: .server) }
        return try TLSContext(
            configuration: configuration(for: https.certificates[0]), role: .server,
            serverNameContexts: all.count > 1 ? all : [])
    }
}
