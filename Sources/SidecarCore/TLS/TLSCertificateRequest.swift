import COpenSSL

/// A workload's fresh key and the CSR it sends for its certificate, made with OpenSSL: an EC
/// P-256 key (PKCS#8 PEM) and a PKCS#10 request signed with it (ECDSA with SHA-256) whose
/// subject is the service name and whose only SAN is the SPIFFE ID. The key never leaves the
/// process; only the CSR travels. A dynamic sidecar makes one at start and on each renewal,
/// through the library the TLS layer already links, so it carries no second crypto stack
/// (the CA side reads and signs CSRs with swift-certificates, `CertificateMinting`).
public struct TLSCertificateRequest: Sendable {
    public let keyPEM: String
    public let csrPEM: String

    /// A new key and its CSR for `identity`.
    public static func make(identity: SPIFFEID) throws(TLSConfigurationError) -> TLSCertificateRequest {
        guard let key = COpenSSL_EVP_PKEY_generate_P256() else { throw failure("cannot make a P-256 key") }
        defer { EVP_PKEY_free(key) }
        guard let request = X509_REQ_new() else { throw failure("cannot make a CSR") }
        defer { X509_REQ_free(request) }
        guard let subject = X509_NAME_new() else { throw failure("cannot make a CSR") }
        defer { X509_NAME_free(subject) }
        let commonName = identity.serviceName ?? identity.description
        guard X509_REQ_set_version(request, Int(X509_REQ_VERSION_1)) == 1,
            X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, commonName, -1, -1, 0) == 1,
            X509_REQ_set_subject_name(request, subject) == 1,
            X509_REQ_set_pubkey(request, key) == 1,
            COpenSSL_X509_REQ_add_uri_san(request, identity.description) == 1,
            X509_REQ_sign(request, key, EVP_sha256()) > 0
        else { throw failure("cannot build the CSR") }
        let keyPEM = try pem("the key") { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
        let csrPEM = try pem("the CSR") { PEM_write_bio_X509_REQ($0, request) }
        return TLSCertificateRequest(keyPEM: keyPEM, csrPEM: csrPEM)
    }

    /// What `write` puts into a memory BIO, as text.
    private static func pem(
        _ what: String, _ write: (OpaquePointer) -> Int32
    ) throws(TLSConfigurationError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw failure("cannot write \(what)") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw failure("cannot write \(what)") }
        var data: UnsafeMutablePointer<CChar>?
        let count = COpenSSL_BIO_get_mem_data(bio, &data)
        guard let data, count > 0 else { throw failure("cannot write \(what)") }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self)
    }

    private static func failure(_ what: String) -> TLSConfigurationError {
        TLSConfigurationError(file: nil, "\(what): \(OpenSSLErrorQueue.drainedDescription(fallback: "no OpenSSL error"))")
    }
}
