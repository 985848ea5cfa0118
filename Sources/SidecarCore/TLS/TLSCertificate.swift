import COpenSSL

/// One X.509 certificate owned by Swift: wraps an OpenSSL `X509*`, freed in `deinit`.
/// Immutable after loading, so it is safe to share across event loops.
public final class TLSCertificate: @unchecked Sendable {
    let x509: OpaquePointer

    /// Takes ownership of one reference to `x509`.
    init(taking x509: OpaquePointer) {
        self.x509 = x509
    }

    /// Borrows `x509`, taking a reference of its own.
    init(borrowing x509: OpaquePointer) {
        X509_up_ref(x509)
        self.x509 = x509
    }

    deinit {
        X509_free(x509)
    }

    /// Every certificate in PEM text, in order. An empty or unparsable source is an error naming it.
    public static func loadChain(from source: PEMSource) throws(TLSConfigurationError) -> [TLSCertificate] {
        let bytes = try source.load()
        var certificates: [TLSCertificate] = []
        let parsed: Bool = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return false }
            defer { BIO_free(bio) }
            while let x509 = PEM_read_bio_X509(bio, nil, nil, nil) {
                certificates.append(TLSCertificate(taking: x509))
            }
            return true
        }
        // The loop ends on "no start line"; anything else in the queue is a real parse error.
        let errors = OpenSSLErrorQueue.drain()
        guard parsed else { throw TLSConfigurationError(file: source.displayName, "out of memory reading PEM") }
        if certificates.isEmpty {
            let detail = errors.last.map { " (\($0.text))" } ?? ""
            throw TLSConfigurationError(
                file: source.displayName, "no PEM certificate found (expected -----BEGIN CERTIFICATE-----)\(detail)")
        }
        return certificates
    }

    /// The SPIFFE IDs among the certificate's URI SANs.
    public var spiffeIDs: [SPIFFEID] {
        guard let raw = X509_get_ext_d2i(x509, NID_subject_alt_name, nil, nil) else { return [] }
        let names = OpaquePointer(raw)
        defer { COpenSSL_GENERAL_NAMES_free(names) }
        var result: [SPIFFEID] = []
        for index in 0..<COpenSSL_sk_GENERAL_NAME_num(names) {
            var length: Int32 = 0
            guard let name = COpenSSL_sk_GENERAL_NAME_value(names, index),
                let data = COpenSSL_GENERAL_NAME_uri(name, &length)
            else { continue }
            let uri = String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
            if let id = SPIFFEID(uri) { result.append(id) }
        }
        return result
    }

    /// The one SPIFFE ID a workload certificate must carry; nil when it has none or several.
    public var spiffeID: SPIFFEID? {
        let ids = spiffeIDs
        return ids.count == 1 ? ids[0] : nil
    }

    /// notAfter as Unix seconds.
    public var notAfter: Int64 { Int64(COpenSSL_X509_not_after(x509)) }
    /// notBefore as Unix seconds.
    public var notBefore: Int64 { Int64(COpenSSL_X509_not_before(x509)) }
}

/// A private key owned by Swift: wraps an OpenSSL `EVP_PKEY*`, freed in `deinit`.
public final class TLSPrivateKey: @unchecked Sendable {
    let pkey: OpaquePointer

    init(taking pkey: OpaquePointer) {
        self.pkey = pkey
    }

    deinit {
        EVP_PKEY_free(pkey)
    }

    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or `RSA PRIVATE KEY`.
    /// Encrypted keys are refused (there is no one to type a passphrase).
    public static func load(from source: PEMSource) throws(TLSConfigurationError) -> TLSPrivateKey {
        let bytes = try source.load()
        let key: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            // A callback that supplies no passphrase: OpenSSL must never prompt on a terminal.
            return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
        }
        guard let key else {
            let detail = OpenSSLErrorQueue.drainedDescription(fallback: "no key found")
            let text = String(decoding: bytes.prefix(4096), as: UTF8.self)
            if text.contains("ENCRYPTED") {
                throw TLSConfigurationError(file: source.displayName, "encrypted private keys are not supported")
            }
            throw TLSConfigurationError(
                file: source.displayName,
                "no PEM private key found (PKCS#8, SEC1 EC or RSA expected): \(detail)")
        }
        return TLSPrivateKey(taking: key)
    }
}
