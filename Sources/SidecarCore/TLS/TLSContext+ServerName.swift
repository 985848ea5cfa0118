import COpenSSL

/// Server certificates chosen by SNI (the gateway's HTTPS listener): on a ClientHello that
/// names a host, the connection switches to the first of its context's `serverNameContexts`
/// whose leaf certificate covers that name (DNS SAN, wildcards as RFC 6125 allows); a name
/// none covers, or no SNI, keeps the connection's own context (the first certificate).
extension TLSContext {
    /// The context among `serverNameContexts` whose leaf covers `hostName`, if any.
    func context(forServerName hostName: String) -> TLSContext? {
        serverNameContexts.first { $0.leafCertificate?.covers(hostName: hostName) == true }
    }
}

extension TLSCertificate {
    /// Whether a DNS SAN (or, failing SANs, the subject CN) of this certificate names `hostName`.
    func covers(hostName: String) -> Bool {
        let bytes = Array(hostName.utf8)
        return bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) {
                X509_check_host(x509, $0.baseAddress, $0.count, 0, nil) == 1
            }
        }
    }
}

/// Runs during the ClientHello on the context the connection started with.
let tlsServerNameCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = {
    ssl, _, _ in
    guard let ssl, let connection = TLSConnection.from(ssl: ssl), let name = COpenSSL_SSL_get_servername(ssl) else {
        return SSL_TLSEXT_ERR_OK
    }
    if let chosen = connection.context.context(forServerName: String(cString: name)), chosen !== connection.context {
        _ = SSL_set_SSL_CTX(ssl, chosen.context)
    }
    return SSL_TLSEXT_ERR_OK
}
